package route

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/proxy"
)

func build(t *testing.T, env map[string]string, store cache.LockingStore) (*Table, error) {
	t.Helper()
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	engine, err := proxy.NewEngine(proxy.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if store == nil {
		store = cache.NewMemory()
	}
	return Build(cfg.Routes, Deps{Store: store, Engine: engine, TokenTimeout: time.Second, RefreshMargin: time.Minute})
}

// Route names that cannot be routes stop start-up with an error naming
// ROUTES (moved here from the config tests with the rules themselves).
func TestBadRouteNamesNameROUTES(t *testing.T) {
	for _, names := range []string{"Bad_Name", "healthz", "a,a", "a-b,a_b"} {
		env := map[string]string{"ROUTES": names}
		for _, n := range strings.Split(names, ",") {
			env[config.RoutePrefix(n)+"ACCESS_TOKEN"] = "t"
			env[config.RoutePrefix(n)+"UPSTREAM_URL"] = "https://api.example"
		}
		_, err := build(t, env, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "ROUTES:") {
			t.Errorf("ROUTES=%s: err = %v, want one starting with ROUTES:", names, err)
		}
	}
}

// refreshRoute is a route living on a refresh token whose token endpoint
// cannot be reached: any token it serves came from the store.
func refreshRoute(grant string) map[string]string {
	env := map[string]string{
		"ROUTES": "api", "API_UPSTREAM_URL": "http://127.0.0.1:1",
		"API_TOKEN_URL": "http://127.0.0.1:1/token", "API_REFRESH_TOKEN": "rt-configured",
	}
	if grant != "" {
		env["API_GRANT"] = grant
	}
	return env
}

// Regression: the stored token's key hashed GRANT as written, so setting
// GRANT to the grant that was inferred orphaned the stored (rotated)
// refresh token. The key follows the effective grant.
func TestSpellingOutTheInferredGrantKeepsTheStoredToken(t *testing.T) {
	store := cache.NewMemory()
	inferred, err := build(t, refreshRoute(""), store)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := inferred.Get("api")
	rotated := auth.Token{AccessToken: "at-rotated", RefreshToken: "rt-rotated", Expiry: time.Now().Add(time.Hour)}
	if err := r.Keeper.Store(context.Background(), rotated); err != nil {
		t.Fatal(err)
	}

	explicit, err := build(t, refreshRoute("refresh_token"), store)
	if err != nil {
		t.Fatal(err)
	}
	r, _ = explicit.Get("api")
	tok, err := r.Keeper.Token(context.Background())
	if err != nil || tok.AccessToken != "at-rotated" {
		t.Fatalf("with GRANT spelled out: token %v, %v; want the stored one", tok, err)
	}
}

// A token an earlier version stored under the key it derived from GRANT as
// written is still found after the upgrade. The key is the one that version
// computed for this configuration.
func TestTokenStoredByAnEarlierVersionIsFound(t *testing.T) {
	store := cache.NewMemory()
	raw, _ := json.Marshal(auth.Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: time.Now().Add(time.Hour)})
	if err := store.Set(context.Background(), "token:api:60530a830f0f5e25c03762b6", raw, 0); err != nil {
		t.Fatal(err)
	}
	table, err := build(t, refreshRoute("refresh_token"), store)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	tok, err := r.Keeper.Token(context.Background())
	if err != nil || tok.AccessToken != "at-old" {
		t.Fatalf("token %v, %v; want the one stored by the earlier version", tok, err)
	}
}

// Regression: the token client followed redirects, re-sending the client
// secret (and passwords, refresh tokens) to wherever they pointed.
func TestTokenRequestsNeverFollowRedirects(t *testing.T) {
	var reached atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	defer elsewhere.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/token", http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()
	table, err := build(t, map[string]string{
		"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": redirecting.URL + "/token", "API_CLIENT_ID": "id", "API_CLIENT_SECRET": "client-secret-value",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	if _, err := r.Keeper.Token(context.Background()); err == nil {
		t.Fatal("a redirect was taken for a token")
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target got %d token requests", n)
	}
}

// Regression: a token endpoint on plain http to another host was used,
// sending secrets in clear. It is refused at start-up unless the operator
// opts in; loopback is fine.
func TestPlainHTTPTokenEndpointsAreRefused(t *testing.T) {
	env := func(tokenURL, allow string) map[string]string {
		e := map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
			"API_TOKEN_URL": tokenURL, "API_CLIENT_ID": "id", "API_CLIENT_SECRET": "s"}
		if allow != "" {
			e["API_ALLOW_INSECURE_TOKEN_URL"] = allow
		}
		return e
	}
	if _, err := build(t, env("http://auth.example/token", ""), nil); err == nil || !strings.HasPrefix(err.Error(), "API_TOKEN_URL:") {
		t.Fatalf("err = %v, want one naming API_TOKEN_URL", err)
	}
	for _, ok := range []map[string]string{env("http://auth.example/token", "true"), env("http://127.0.0.1:9/token", ""),
		env("http://localhost:9/token", ""), env("https://auth.example/token", "")} {
		if _, err := build(t, ok, nil); err != nil {
			t.Errorf("%s: %v", ok["API_TOKEN_URL"], err)
		}
	}
}
