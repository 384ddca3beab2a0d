package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/emulators"
)

func viewneoEnv(t *testing.T, viewneo *emulators.Viewneo, extra map[string]string) *config.Config {
	t.Helper()
	env := map[string]string{
		"ROUTES": "viewneo", "VIEWNEO_UPSTREAM_URL": serve(t, viewneo),
		"VIEWNEO_CLIENT_ID": demoClientID, "VIEWNEO_CLIENT_SECRET": demoClientSecret,
		"VIEWNEO_REFRESH_TOKEN": viewneo.IssueRefreshToken(),
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Regression: without Redis, a rotated refresh token lived only in memory,
// and the configured one was spent: the first restart presented it again.
// With TOKEN_STORE_PATH the rotated token survives restarts, sealed.
func TestFileStoreKeepsRotatedTokensAcrossRestarts(t *testing.T) {
	viewneo := emulators.NewViewneo(emulators.Options{ClientID: demoClientID, ClientSecret: demoClientSecret})
	path := filepath.Join(t.TempDir(), "tokens")
	cfg := viewneoEnv(t, viewneo, map[string]string{"TOKEN_STORE_PATH": path, "TOKEN_ENCRYPTION_KEY": testKey})

	var issued []string
	for restart := range 3 {
		a, err := New(cfg, zap.NewNop())
		if err != nil {
			t.Fatalf("start %d: %v", restart, err)
		}
		var out bytes.Buffer
		if err := a.PrintToken(context.Background(), "viewneo", &out); err != nil {
			t.Fatalf("start %d: %v (vendor: %v)", restart, err, viewneo.Stats().Refusals)
		}
		issued = append(issued, strings.TrimSpace(out.String()))
		a.Close()
	}
	if refusals := viewneo.Stats().Refusals; len(refusals) != 0 {
		t.Fatalf("a refresh token was presented twice across restarts: %v", refusals)
	}
	if n := viewneo.Stats().TokenRequests["refresh_token"]; n != 1 {
		t.Fatalf("%d refreshes for three starts within the token's life, want 1", n)
	}
	// The later starts serve the token the first one stored.
	if issued[0] == "" || issued[1] != issued[0] || issued[2] != issued[0] {
		t.Fatalf("three starts printed %d different tokens, want the stored one each time", len(slices.Compact(slices.Clone(issued))))
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range append(viewneo.Secrets(), demoClientSecret, issued[0]) {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatal("the store file holds a token in clear")
		}
	}
}

// Two processes on one store file would each refresh a rotating token: the
// second is refused with the reason.
func TestFileStoreRefusesASecondProcess(t *testing.T) {
	viewneo := emulators.NewViewneo(emulators.Options{ClientID: demoClientID, ClientSecret: demoClientSecret})
	cfg := viewneoEnv(t, viewneo, map[string]string{"TOKEN_STORE_PATH": filepath.Join(t.TempDir(), "tokens"), "TOKEN_ENCRYPTION_KEY": testKey})
	a, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := New(cfg, zap.NewNop()); err == nil || !strings.HasPrefix(err.Error(), "TOKEN_STORE_PATH: another authsidecar process") {
		t.Fatalf("second process: %v", err)
	}
}

// Regression: `authsidecar token ROUTE` beside a running sidecar refreshed
// on its own and killed a rotating grant. Without a shared store it refuses.
func TestTokenCommandRefusesToRefreshARotatingGrantAlone(t *testing.T) {
	viewneo := emulators.NewViewneo(emulators.Options{ClientID: demoClientID, ClientSecret: demoClientSecret, AccessLifetime: time.Hour})
	a, err := New(viewneoEnv(t, viewneo, nil), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	err = a.PrintToken(context.Background(), "viewneo", &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "rotate") || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("token for a rotating grant without a shared store: %v", err)
	}
	if n := viewneo.Stats().TokenRequests["refresh_token"]; n != 0 {
		t.Fatalf("the command refreshed %d times", n)
	}
}
