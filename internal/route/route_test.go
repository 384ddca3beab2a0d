package route

import (
	"context"
	"encoding/json"
	"strings"
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
