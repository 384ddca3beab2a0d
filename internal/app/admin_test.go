package app

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

const adminSecret = "operator-secret-0123456789"

// The operator's HTTP API does what the accounts commands do: add an
// account from a token, list the route's accounts, revoke and remove one;
// every call needs the admin token, and nothing works without one set.
func TestAdminAPIManagesAccounts(t *testing.T) {
	clock := fakeclock.New(time.Now())
	vendor, upstream := newCredVendor(t, clock)
	vendor.configure("refresh_token", basicClient, nil, "s", "seed-own", "seed-alice", "seed-bob")
	env := map[string]string{"ROUTES": "api,static", "API_UPSTREAM_URL": upstream, "API_TOKEN_URL": vendor.tokenURL,
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET": "s", "API_REFRESH_TOKEN": "seed-own",
		"STATIC_UPSTREAM_URL": upstream, "STATIC_ACCESS_TOKEN": "tok"}
	_, off := sidecar(t, env, clock)
	if got := call(t, "GET", off+"/admin/routes/api/accounts", nil, http.Header{"X-Authsidecar-Admin-Token": {""}}); got.status != http.StatusForbidden || !strings.Contains(string(got.body), "admin_disabled") {
		t.Fatalf("without ADMIN_TOKEN: %d %s", got.status, got.body)
	}
	env["ADMIN_TOKEN"] = adminSecret
	_, side := sidecar(t, env, clock)
	op := func(method, path, body string, token string) (int, map[string]any) {
		t.Helper()
		got := call(t, method, side+path, []byte(body), http.Header{"X-Authsidecar-Admin-Token": {token}, "Content-Type": {"application/json"}})
		var out map[string]any
		if err := json.Unmarshal(got.body, &out); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, path, got.body)
		}
		if bytes.Contains(got.body, []byte("seed-")) {
			t.Fatalf("%s %s answered a token: %s", method, path, got.body)
		}
		return got.status, out
	}
	for _, tc := range []struct {
		method, path, body, token string
		status                    int
		code                      string
	}{
		{"GET", "/admin/routes/api/accounts", "", "wrong", 401, "admin_token_required"},
		{"PUT", "/admin/routes/api/accounts/alice", `{"refresh_token":"seed-alice"}`, "", 401, "admin_token_required"},
		{"GET", "/admin/routes/nope/accounts", "", adminSecret, 404, "unknown_route"},
		{"GET", "/admin/routes/static/accounts", "", adminSecret, 409, "no_accounts"},
		{"PUT", "/admin/routes/api/accounts/a%20b", `{"refresh_token":"x"}`, adminSecret, 400, "bad_account"},
		{"PUT", "/admin/routes/api/accounts/alice", `{"refresh_token":"seed-alice","access_token":"x"}`, adminSecret, 400, "bad_request_body"},
		{"PUT", "/admin/routes/api/accounts/alice", `{"refresh":"seed-alice"}`, adminSecret, 400, "bad_request_body"},
		{"DELETE", "/admin/routes/api/accounts/carol", "", adminSecret, 404, "unknown_account"},
		{"POST", "/admin/routes/api/accounts", "", adminSecret, 405, "method_not_allowed"},
		{"GET", "/admin/whatever", "", adminSecret, 404, "not_found"},
	} {
		if status, out := op(tc.method, tc.path, tc.body, tc.token); status != tc.status || out["error"] != tc.code {
			t.Errorf("%s %s: %d %v, want %d %s", tc.method, tc.path, status, out, tc.status, tc.code)
		}
	}

	for _, acct := range []string{"bob", "alice"} {
		if status, out := op("PUT", "/admin/routes/api/accounts/"+acct, `{"refresh_token":"seed-`+acct+`"}`, adminSecret); status != 200 || out["added"] != true {
			t.Fatalf("add %s: %d %v", acct, status, out)
		}
	}
	if status, out := op("GET", "/admin/routes/api/accounts", "", adminSecret); status != 200 || !sameJSON(out["accounts"], []any{"alice", "bob"}) {
		t.Fatalf("list: %d %v", status, out)
	}
	as := func(account string) answer {
		return call(t, "GET", side+"/api/x", nil, http.Header{"X-Authsidecar-Account": {account}})
	}
	if got := as("alice"); string(got.body) != "ok seed-alice" {
		t.Fatalf("alice: %d %s", got.status, got.body)
	}
	if status, out := op("DELETE", "/admin/routes/api/accounts/alice", "", adminSecret); status != 200 || out["removed"] != true {
		t.Fatalf("revoke: %d %v", status, out)
	}
	if got := as("alice"); got.status != 404 {
		t.Fatalf("alice after removal: %d %s", got.status, got.body)
	}
	if status, out := op("GET", "/admin/routes/api/accounts", "", adminSecret); status != 200 || !sameJSON(out["accounts"], []any{"bob"}) {
		t.Fatalf("list after removal: %d %v", status, out)
	}
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
