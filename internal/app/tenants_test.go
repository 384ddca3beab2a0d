package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

const (
	acmeKey   = "acme-key-0123456789abcdef"
	globexKey = "globex-key-0123456789abcdef"
	opsKey    = "ops-key-0123456789abcdef"
)

// Tenants in shared mode: each named client key reaches only the routes
// and accounts its rules give it, whatever the caller tries; every denial
// is a 403 with a JSON error, and counted.
func TestTenantsAreIsolated(t *testing.T) {
	clock := fakeclock.New(time.Now())
	vendor, upstream := newCredVendor(t, clock)
	accounts := []string{"acme-1", "acme-2", "ACME-3", "globex-main", "globex-mainx"}
	seeds := []string{"seed-own"}
	for _, acct := range accounts {
		seeds = append(seeds, "seed-"+acct)
	}
	vendor.configure("refresh_token", basicClient, nil, append([]string{"s"}, seeds...)...)
	a, side := sidecar(t, map[string]string{
		"ROUTES": "api,other", "API_UPSTREAM_URL": upstream, "API_TOKEN_URL": vendor.tokenURL,
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET": "s", "API_REFRESH_TOKEN": "seed-own",
		"OTHER_UPSTREAM_URL": serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok "+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		})),
		"OTHER_ACCESS_TOKEN":         "static-other",
		"CLIENT_KEYS":                "acme:" + acmeKey + ",globex:" + globexKey + "," + opsKey,
		"CLIENT_KEY_ACME_ROUTES":     "api",
		"CLIENT_KEY_ACME_ACCOUNTS":   "acme-*",
		"CLIENT_KEY_GLOBEX_ACCOUNTS": "globex-main",
	}, clock)
	for _, acct := range accounts {
		if err := a.AddAccount(context.Background(), "api", acct, "seed-"+acct, false); err != nil {
			t.Fatal(err)
		}
	}
	as := func(key, path string, accounts ...string) answer {
		h := http.Header{"X-Authsidecar-Key": {key}}
		if len(accounts) > 0 {
			h["X-Authsidecar-Account"] = accounts
		}
		return call(t, "GET", side+path, nil, h)
	}
	ok := func(got answer, seed string) {
		t.Helper()
		if got.status != 200 || string(got.body) != "ok "+seed {
			t.Fatalf("%d %s, want the token of %s", got.status, got.body, seed)
		}
	}
	ok(as(acmeKey, "/api/x", "acme-1"), "seed-acme-1")
	ok(as(acmeKey, "/api/x", "acme-2"), "seed-acme-2")
	ok(as(globexKey, "/api/x", "globex-main"), "seed-globex-main")
	ok(as(opsKey, "/api/x"), "seed-own") // an anonymous key reaches everything
	ok(as(opsKey, "/api/x", "ACME-3"), "seed-ACME-3")
	ok(as(opsKey, "/other/x"), "static-other")

	denied := 0
	for _, tc := range []struct {
		name, key, path string
		accounts        []string
		reason          string
	}{
		{"a route not given", acmeKey, "/other/x", nil, "route"},
		{"a route not given, with an account", acmeKey, "/other/x", []string{"acme-1"}, "route"},
		{"the route's own account", acmeKey, "/api/x", nil, "account"},
		{"another tenant's account", acmeKey, "/api/x", []string{"globex-main"}, "account"},
		{"another case of the prefix", acmeKey, "/api/x", []string{"ACME-3"}, "account"},
		{"the prefix without its dash", acmeKey, "/api/x", []string{"acme"}, "account"},
		{"an exact name, extended", globexKey, "/api/x", []string{"globex-mainx"}, "account"},
		{"an exact name, cut", globexKey, "/api/x", []string{"globex-mai"}, "account"},
		{"another tenant's prefix", globexKey, "/api/x", []string{"acme-1"}, "account"},
		{"the route's own account, other tenant", globexKey, "/api/x", nil, "account"},
		{"a static route's token (the operator's)", globexKey, "/other/x", nil, "account"},
	} {
		got := as(tc.key, tc.path, tc.accounts...)
		if got.status != http.StatusForbidden || !strings.Contains(string(got.body), `"error":"forbidden"`) {
			t.Fatalf("%s: %d %s", tc.name, got.status, got.body)
		}
		denied++
	}
	// Spellings that are no account at all are refused before any rule.
	for _, tc := range []struct {
		name     string
		accounts []string
	}{
		{"two headers", []string{"acme-1", "globex-main"}},
		{"a list in one header", []string{"acme-1,globex-main"}},
		{"percent-encoded", []string{"acme-%67lobex-main"}},
		{"a path", []string{"acme-1/../globex-main"}},
		{"a wildcard", []string{"acme-*"}},
		{"non-ASCII", []string{"acme-\u0131"}},
	} {
		if got := as(acmeKey, "/api/x", tc.accounts...); got.status != http.StatusBadRequest {
			t.Fatalf("%s: %d %s", tc.name, got.status, got.body)
		}
	}
	// Keys: none, a wrong one, two at once (one good).
	for _, h := range []http.Header{{}, {"X-Authsidecar-Key": {"acme-key-0123456789abcdeX"}},
		{"X-Authsidecar-Key": {acmeKey, opsKey}, "X-Authsidecar-Account": {"globex-main"}}} {
		req, _ := http.NewRequest("GET", side+"/api/x", nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("keys %v: %d", h, resp.StatusCode)
		}
	}
	// A tenant's unknown-route answer lists only its own routes.
	if got := as(acmeKey, "/nope/x"); got.status != 404 || strings.Contains(string(got.body), "other") {
		t.Fatalf("unknown route for acme: %d %s", got.status, got.body)
	}

	// Two tenants hammering at once each get only their own accounts' tokens.
	var wg sync.WaitGroup
	errs := make(chan string, 400)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, acct := acmeKey, []string{"acme-1", "acme-2"}[i%2]
			if i%4 >= 2 {
				key, acct = globexKey, "globex-main"
			}
			req, _ := http.NewRequest("GET", side+"/api/x", nil)
			req.Header.Set("X-Authsidecar-Key", key)
			req.Header.Set("X-Authsidecar-Account", acct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok seed-"+acct {
				errs <- fmt.Sprintf("%s as %s: %d %s", key[:4], acct, resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	metrics := string(call(t, "GET", side+"/metrics", nil, nil).body)
	for _, want := range []string{
		`authsidecar_denied_requests_total{reason="route",route="other"} 2`,
		`authsidecar_denied_requests_total{reason="account",route="other"} 1`,
		fmt.Sprintf(`authsidecar_denied_requests_total{reason="account",route="api"} %d`, denied-3),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
