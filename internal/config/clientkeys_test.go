package config

import (
	"slices"
	"strings"
	"testing"
)

const (
	key1 = "0123456789abcdef-one"
	key2 = "0123456789abcdef-two"
)

// Named client keys and their rules: read as a tenant's operator writes
// them, and every mistake stops start-up naming the variable, never a key.
func TestClientKeyRules(t *testing.T) {
	c, err := LoadFrom(map[string]string{"ROUTES": "api,other",
		"CLIENT_KEYS": "acme-corp:" + key1 + ", " + key2, "CLIENT_KEY_ACME_CORP_ROUTES": "api",
		"CLIENT_KEY_ACME_CORP_ACCOUNTS": "acme-*, acme@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Clients) != 2 || c.Clients[0].Name != "acme-corp" || c.Clients[0].Key != key1 ||
		!slices.Equal(c.Clients[0].Routes, []string{"api"}) || !slices.Equal(c.Clients[0].Accounts, []string{"acme-*", "acme@example.com"}) ||
		c.Clients[1].Name != "" || c.Clients[1].Key != key2 || c.Clients[1].Routes != nil {
		t.Fatalf("clients: %+v", c.Clients)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("rules taken for typos: %v", c.Warnings)
	}

	for _, tc := range []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{"CLIENT_KEYS": "acme:" + key1, "CLIENT_KEY_ACNE_ROUTES": "api"}, "CLIENT_KEY_ACNE_*"},
		{map[string]string{"CLIENT_KEY_ACME_ROUTES": "api"}, "CLIENT_KEY_ACME_*"},
		{map[string]string{"CLIENT_KEYS": "acme:" + key1, "CLIENT_KEY_ACME_ROUTES": "apj"}, "CLIENT_KEY_ACME_ROUTES"},
		{map[string]string{"CLIENT_KEYS": "acme:" + key1, "CLIENT_KEY_ACME_ROUTES": " , "}, "CLIENT_KEY_ACME_ROUTES"},
		{map[string]string{"CLIENT_KEYS": "acme:" + key1, "CLIENT_KEY_ACME_ACCOUNTS": "acme-*x"}, "CLIENT_KEY_ACME_ACCOUNTS"},
		{map[string]string{"CLIENT_KEYS": "acme:" + key1, "CLIENT_KEY_ACME_ACCOUNTS": "a/b"}, "CLIENT_KEY_ACME_ACCOUNTS"},
		{map[string]string{"CLIENT_KEYS": "acme:short"}, "CLIENT_KEYS"},
		{map[string]string{"CLIENT_KEYS": "acme:" + key1 + ",ACME:" + key2}, "CLIENT_KEYS"},
		{map[string]string{"CLIENT_KEYS": "acme:" + key1 + ",globex:" + key1}, "CLIENT_KEYS"},
	} {
		tc.env["ROUTES"] = "api"
		_, err := LoadFrom(tc.env)
		if err == nil || !strings.HasPrefix(err.Error(), tc.wantVar+":") || strings.Contains(err.Error(), key1) {
			t.Errorf("env %v: err = %v, want one starting with %s: and no key", tc.env, err, tc.wantVar)
		}
	}
}

// ADMIN_TOKEN opens the admin API: one short enough to guess stops
// start-up, under the rule of client keys, and the error does not quote it.
func TestAdminTokenTooShort(t *testing.T) {
	_, err := LoadFrom(map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example.com",
		"API_ACCESS_TOKEN": "t", "ADMIN_TOKEN": "hunter2-admin"})
	if err == nil || !strings.HasPrefix(err.Error(), "ADMIN_TOKEN:") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v, want one starting with ADMIN_TOKEN: that does not quote it", err)
	}
	if _, err := LoadFrom(map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example.com",
		"API_ACCESS_TOKEN": "t", "ADMIN_TOKEN": "hunter2-admin-0123456789"}); err != nil {
		t.Fatalf("a 24-character admin token: %v", err)
	}
}
