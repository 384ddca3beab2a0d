package auth

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// An account whose token is gone is told how an account gets one back —
// not to set the route's own VIADEO_ACCESS_TOKEN, which serves the route,
// never an account.
func TestViadeoAccountConsentErrorNamesTheAccountWay(t *testing.T) {
	preset, _ := LookupPreset("viadeo")
	built, err := preset.Build("viadeo", preset.Apply(Settings{AccessToken: "route-own"}), http.DefaultClient, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := AccountGrant(built.Grant, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = acct.Fetch(context.Background(), Token{})
	if err == nil || !strings.Contains(err.Error(), "accounts add") || strings.Contains(err.Error(), "VIADEO_ACCESS_TOKEN") {
		t.Fatalf("an account without a token: %v", err)
	}
	if tok, err := built.Grant.Fetch(context.Background(), Token{}); err != nil || tok.AccessToken != "route-own" {
		t.Fatalf("the route's own grant: %v %v", tok, err)
	}
}
