package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

// Several vendor accounts behind one route: each call's
// X-Authsidecar-Account picks its account's token (the vendor says whose
// token it saw), the header never reaches the vendor, an account that does
// not exist is 404 unknown_account, a malformed name is 400, and a revoked
// account is gone.
func TestAccountsBehindOneRoute(t *testing.T) {
	clock := fakeclock.New(time.Now())
	vendor, upstream := newCredVendor(t, clock)
	vendor.configure("refresh_token", basicClient, nil, "s", "seed-own", "seed-alice", "seed-bob")
	a, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": upstream, "API_TOKEN_URL": vendor.tokenURL,
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET": "s", "API_REFRESH_TOKEN": "seed-own"}, clock)
	ctx := context.Background()
	for _, acct := range []string{"alice", "bob"} {
		if err := a.AddAccount(ctx, "api", acct, "seed-"+acct, false); err != nil {
			t.Fatal(err)
		}
	}
	as := func(account string) answer {
		h := http.Header{}
		if account != "" {
			h.Set("X-Authsidecar-Account", account)
		}
		return call(t, "GET", side+"/api/x", nil, h)
	}
	for _, tc := range []struct{ account, want string }{{"", "seed-own"}, {"alice", "seed-alice"}, {"bob", "seed-bob"}, {"alice", "seed-alice"}} {
		if got := as(tc.account); got.status != 200 || string(got.body) != "ok "+tc.want {
			t.Fatalf("as %q: %d %s, want the token of %s", tc.account, got.status, got.body, tc.want)
		}
	}

	// A 401 on one account refreshes and replays that account's token.
	clock.Advance(6 * time.Second)
	vendor.revokeAll(false)
	if got := as("bob"); got.status != 200 || string(got.body) != "ok seed-bob" {
		t.Fatalf("bob after a 401: %d %s", got.status, got.body)
	}

	for _, bad := range []string{"", "a b", strings.Repeat("x", 65), "ALICE/../bob", "alice\u00e9"} {
		if bad == "" {
			continue
		}
		got := call(t, "GET", side+"/api/x", nil, http.Header{"X-Authsidecar-Account": {bad}})
		if got.status != http.StatusBadRequest || !bytes.Contains(got.body, []byte(`"bad_account"`)) {
			t.Fatalf("account %q: %d %s", bad, got.status, got.body)
		}
	}
	got := as("carol")
	var body map[string]any
	json.Unmarshal(got.body, &body)
	if got.status != http.StatusNotFound || body["error"] != "unknown_account" || body["route"] != "api" {
		t.Fatalf("unknown account: %d %s", got.status, got.body)
	}
	if as("Alice").status != http.StatusNotFound {
		t.Fatal("an account was reached by another case of its name")
	}

	if list, err := a.ListAccounts(ctx, "api"); err != nil || strings.Join(list, ",") != "alice,bob" {
		t.Fatalf("list: %q %v", list, err)
	}
	metrics := string(call(t, "GET", side+"/metrics", nil, nil).body)
	for _, want := range []string{`authsidecar_accounts{route="api"} 2`, `authsidecar_accounts_in_memory{route="api"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if _, err := a.RevokeAccount(ctx, "api", "bob"); err != nil {
		t.Fatal(err)
	}
	if got := as("bob"); got.status != http.StatusNotFound {
		t.Fatalf("a removed account: %d %s", got.status, got.body)
	}
	if got := as("alice"); got.status != 200 || string(got.body) != "ok seed-alice" {
		t.Fatalf("alice after bob left: %d %s", got.status, got.body)
	}
}
