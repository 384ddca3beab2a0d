package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/logtest"
	"github.com/authsidecar/authsidecar/internal/oauthtest"
)

// TestEndpointDialects: each dialect is accepted by a server that wants it
// and refused by one that wants another, so the fake would catch drift.
func TestEndpointDialects(t *testing.T) {
	dialects := []struct {
		name  string
		auth  string
		body  BodyFormat
		basic bool
		json  bool
	}{
		{"basic+form", "basic", FormBody, true, false},
		{"body+form", "body", FormBody, false, false},
		{"body+json", "body", JSONBody, false, true},
		{"basic+json", "basic", JSONBody, true, true},
	}
	for _, server := range dialects {
		for _, client := range dialects {
			t.Run("server "+server.name+"/client "+client.name, func(t *testing.T) {
				srv := oauthtest.New(t, oauthtest.Config{
					// A secret that needs escaping in Basic (RFC 6749 2.3.1).
					ClientID: "id:1", ClientSecret: "s%cr:t", BasicAuth: server.basic, JSONBody: server.json,
					Grants: []string{"client_credentials"},
				})
				ca, err := newClientAuth(Settings{ClientID: "id:1", ClientSecret: "s%cr:t", ClientAuth: client.auth}, nil)
				if err != nil {
					t.Fatal(err)
				}
				g := &OAuth2Grant{
					Type:     GrantClientCredentials,
					TokenURL: srv.TokenURL(),
					Endpoint: &Endpoint{Auth: ca, Body: client.body, Client: http.DefaultClient},
				}
				tok, err := g.Fetch(context.Background(), Token{})
				if server == client {
					if err != nil || tok.AccessToken == "" {
						t.Fatalf("matching dialect refused: %v (server said %v)", err, srv.BadRequests())
					}
					return
				}
				if err == nil {
					t.Fatalf("server speaking %s accepted a %s request", server.name, client.name)
				}
				if KindOf(err) != Rejected {
					t.Errorf("kind = %v, want Rejected: %v", KindOf(err), err)
				}
			})
		}
	}
}

func TestPasswordGrantAndFallbackFromDeadRefreshToken(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Config{
		ClientID: "cid", ClientSecret: "csecret", BasicAuth: true,
		Grants: []string{"password", "refresh_token"}, Username: "ann", Password: "pw", Rotate: true,
	})
	g := &OAuth2Grant{
		Type: GrantPassword, TokenURL: srv.TokenURL(), Username: "ann", Password: "pw",
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "cid", Secret: "csecret"}, Client: http.DefaultClient},
	}
	first, err := g.Fetch(context.Background(), Token{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := g.Fetch(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}
	if srv.TokenCalls("refresh_token") != 1 {
		t.Fatalf("holding a refresh token, the grant did not refresh: %d refreshes", srv.TokenCalls("refresh_token"))
	}
	// Presenting the used refresh token again is refused; the grant logs in
	// again with the password instead of failing.
	third, err := g.Fetch(context.Background(), first)
	if err != nil {
		t.Fatalf("fallback to password after a refused refresh token: %v", err)
	}
	if third.AccessToken == second.AccessToken || srv.TokenCalls("password") != 2 {
		t.Fatalf("want a second password login, got %d", srv.TokenCalls("password"))
	}
}

func TestRefreshKeepsOldRefreshTokenWhenAnswerOmitsIt(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Config{
		ClientID: "cid", ClientSecret: "cs", BasicAuth: true, Grants: []string{"refresh_token"},
		InitialRefreshToken: "rt-initial", Rotate: false,
	})
	g := &OAuth2Grant{Type: GrantRefreshToken, TokenURL: srv.TokenURL(), RefreshToken: "rt-initial",
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "cid", Secret: "cs"}, Client: http.DefaultClient}}
	tok, err := g.Fetch(context.Background(), Token{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "rt-initial" {
		t.Fatalf("refresh token = %q, want the old one kept", tok.RefreshToken)
	}
}

func TestAuthorizationCodeWithoutRefreshTokenNeedsConsent(t *testing.T) {
	g := &OAuth2Grant{Type: GrantAuthorizationCode, TokenURL: "http://127.0.0.1:1/token", ConsentPath: "/oauth/x/start",
		Endpoint: &Endpoint{Client: http.DefaultClient}}
	_, err := g.Fetch(context.Background(), Token{})
	if KindOf(err) != ConsentRequired || !strings.Contains(err.Error(), "/oauth/x/start") {
		t.Fatalf("err = %v, want a consent error naming the start path", err)
	}
}

func TestTokenEndpointErrorsHideQueryAndBody(t *testing.T) {
	ep := &Endpoint{Client: &http.Client{Timeout: time.Second}}
	_, err := ep.Do(context.Background(), TokenRequest{URL: "http://127.0.0.1:1/token?refresh_token=sekrit-rt", Params: nil})
	if err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Fatalf("err = %v; want an error without the query", err)
	}
}

// Regression: LOG_LEVEL=debug added nothing. At debug, a failed token call
// logs the endpoint's status, content type and first bytes — without the
// secrets the request carried or the answer holds.
func TestDebugLogShowsFailedAnswersWithoutSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		// A vendor that quotes what it was sent, and leaks a token.
		fmt.Fprintf(w, `{"error":"invalid_grant","error_description":"bad refresh token %s","access_token":"leaked-at-123"}`, r.PostForm.Get("refresh_token"))
	}))
	defer srv.Close()
	log, logs := logtest.New()
	g := &OAuth2Grant{Type: GrantRefreshToken, TokenURL: srv.URL, RefreshToken: "rt-secret-value",
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "cid", Secret: "client-secret-value"}, Client: http.DefaultClient, Log: log}}
	if _, err := g.Fetch(context.Background(), Token{}); err == nil {
		t.Fatal("a refused refresh gave a token")
	}
	logs.WaitFor(t, `"status":400`)
	out := logs.String()
	for _, want := range []string{`"content_type":"application/json"`, `invalid_grant`, `bad refresh token REDACTED`} {
		if !strings.Contains(out, want) {
			t.Errorf("debug line lacks %s: %s", want, out)
		}
	}
	for _, secret := range []string{"rt-secret-value", "client-secret-value", "leaked-at-123"} {
		if strings.Contains(out, secret) {
			t.Errorf("debug line holds %s", secret)
		}
	}
}
