package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Accounts made by consent: /oauth/ROUTE/start?account=NAME connects that
// account and no other; each account's calls carry its own token; an
// account whose token the vendor revoked is told to consent again at its
// own consent URL while its sibling keeps working; a bad name is refused
// before anyone is sent to the vendor.
func TestConsentMakesAccounts(t *testing.T) {
	v := setupViadeo(t, nil, false)
	as := func(account string) answer {
		return call(t, "GET", v.side.url+"/viadeo/me", nil, http.Header{"X-Authsidecar-Account": {account}})
	}
	if got := as("alice"); got.status != http.StatusNotFound || !strings.Contains(string(got.body), "unknown_account") {
		t.Fatalf("before consent: %d %s", got.status, got.body)
	}
	seen := map[string]string{}
	for _, acct := range []string{"alice", "bob@example.com"} {
		status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start?account="+acct)
		if status != http.StatusOK || !strings.Contains(page, "Account "+acct+" of route viadeo is connected") {
			t.Fatalf("consent for %s: %d %s", acct, status, page)
		}
		q, _ := url.ParseQuery(as(acct).echo(t).Query)
		seen[acct] = q.Get("access_token")
	}
	if seen["alice"] == "" || seen["alice"] == seen["bob@example.com"] {
		t.Fatalf("the accounts' tokens: %v", seen)
	}
	// The route's own connection was not made by the accounts' consent.
	if got := call(t, "GET", v.side.url+"/viadeo/me", nil, nil); got.status != http.StatusBadGateway || !strings.Contains(string(got.body), "consent_required") {
		t.Fatalf("the route's own connection: %d %s", got.status, got.body)
	}
	// A second consent for a working account needs the operator.
	if status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start?account=alice"); status != http.StatusConflict {
		t.Fatalf("consent over a working account: %d %s", status, page)
	}

	// Alice revokes her grant at the vendor: only alice must consent again.
	if !v.emu.RevokeAccess(seen["alice"]) {
		t.Fatal("the emulator did not know alice's token")
	}
	got := as("alice")
	var raw map[string]any
	json.Unmarshal(got.body, &raw)
	if got.status != http.StatusBadGateway || raw["error"] != "consent_required" || raw["consent_url"] != "/oauth/viadeo/start?account=alice" {
		t.Fatalf("alice after revocation: %d %s", got.status, got.body)
	}
	if q, _ := url.ParseQuery(as("bob@example.com").echo(t).Query); q.Get("access_token") != seen["bob@example.com"] {
		t.Fatal("bob's calls changed when alice's grant was revoked")
	}
	if status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start?account=alice"); status != http.StatusOK {
		t.Fatalf("alice's second consent: %d %s", status, page)
	}
	as("alice").echo(t)

	for _, bad := range []string{"a%20b", "x/y", strings.Repeat("x", 65), ""} {
		status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start?account="+bad)
		if status != http.StatusBadRequest || !strings.Contains(page, "Bad account name") {
			t.Fatalf("consent for account %q: %d %s", bad, status, page)
		}
	}
}

// When client keys give tenants their accounts, nobody but the operator
// may connect an account: a tenant could otherwise connect its own vendor
// account under a name another tenant will call.
func TestAccountConsentNeedsTheOperatorWhenTenantsHaveAccounts(t *testing.T) {
	tenants := map[string]string{"CLIENT_KEYS": "acme:" + acmeKey, "CLIENT_KEY_ACME_ACCOUNTS": "acme-*"}
	v := setupViadeo(t, tenants, false)
	if status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start?account=acme-1"); status != http.StatusForbidden || !strings.Contains(page, "ADMIN_TOKEN") {
		t.Fatalf("without ADMIN_TOKEN: %d %s", status, page)
	}
	tenants["ADMIN_TOKEN"] = "operator-secret-0123456789"
	v = setupViadeo(t, tenants, false)
	if status, _ := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start?account=acme-1"); status != http.StatusUnauthorized {
		t.Fatalf("without the admin token: %d", status)
	}
	b := newBrowser(t)
	req, _ := http.NewRequest("GET", v.side.url+"/oauth/viadeo/start?account=acme-1", nil)
	req.SetBasicAuth("", tenants["ADMIN_TOKEN"])
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with the admin token: %d", resp.StatusCode)
	}
	got := call(t, "GET", v.side.url+"/viadeo/me", nil, http.Header{"X-Authsidecar-Account": {"acme-1"}, "X-Authsidecar-Key": {acmeKey}})
	got.echo(t)
}
