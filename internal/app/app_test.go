package app

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/issuer"
	"github.com/authsidecar/authsidecar/internal/oauthtest"
)

func build(t *testing.T, env map[string]string) (*App, error) {
	t.Helper()
	cfg, err := config.LoadFrom(env)
	if err != nil {
		return nil, err
	}
	return New(cfg, zap.NewNop())
}

func TestGrantInferenceAndMissingCredentials(t *testing.T) {
	base := map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example", "API_TOKEN_URL": "https://auth.example/token"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	ok := []map[string]string{
		with("API_ACCESS_TOKEN", "t"),
		with("API_REFRESH_TOKEN", "r", "API_CLIENT_ID", "c", "API_CLIENT_SECRET", "s"),
		with("API_USERNAME", "u", "API_PASSWORD", "p"),
		with("API_CLIENT_ID", "c", "API_CLIENT_SECRET", "s"),
		with("API_GRANT", "client_credentials", "API_CLIENT_ID", "c", "API_CLIENT_SECRET", "s", "API_USERNAME", "u", "API_PASSWORD", "p"),
	}
	for _, env := range ok {
		if _, err := build(t, env); err != nil {
			t.Errorf("env %v: %v", env, err)
		}
	}
	bad := []struct {
		env     map[string]string
		wantErr string
	}{
		{with(), "API_GRANT: no credentials"},
		// A missing credential names the variables that would satisfy it.
		{with(), "API_GRANT: no credentials for route api: set API_ACCESS_TOKEN, API_REFRESH_TOKEN, API_USERNAME and API_PASSWORD, or API_CLIENT_ID and API_CLIENT_SECRET"},
		// Regression: a static token beside client credentials was taken
		// silently; the README calls it ambiguous.
		{with("API_ACCESS_TOKEN", "t", "API_CLIENT_ID", "c", "API_CLIENT_SECRET", "s"), "API_GRANT: ambiguous"},
		{with("API_ACCESS_TOKEN", "t", "API_REFRESH_TOKEN", "r"), "API_GRANT: ambiguous"},
		{with("API_USERNAME", "u"), "API_PASSWORD: is required"},
		{with("API_GRANT", "client_credentials", "API_CLIENT_ID", "c"), "API_CLIENT_SECRET: is required"},
		{with("API_GRANT", "magic", "API_ACCESS_TOKEN", "t"), "API_GRANT: unknown grant"},
		{with("API_ACCESS_TOKEN", "t", "API_UPSTREAM_URL", "ftp://x"), "API_UPSTREAM_URL:"},
		{with("API_ACCESS_TOKEN", "t", "API_UPSTREAM_URL", "https://user:hunter2@x"), "API_UPSTREAM_URL:"},
		{with("API_ACCESS_TOKEN", "t", "API_INJECT", "cookie"), "API_INJECT:"},
		{with("API_CLIENT_ID", "c", "API_CLIENT_SECRET", "s", "API_CLIENT_AUTH", "mtls"), "API_CLIENT_AUTH:"},
		{with("API_CLIENT_ID", "c", "API_CLIENT_SECRET", "s", "API_TOKEN_BODY", "xml"), "API_TOKEN_BODY:"},
		{with("API_CLIENT_ID", "c", "API_CLIENT_SECRET", "s", "API_TOKEN_URL", "::"), "API_TOKEN_URL:"},
	}
	for _, tt := range bad {
		_, err := build(t, tt.env)
		if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
			t.Errorf("env %v: err = %v, want prefix %q", tt.env, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error reveals a secret: %v", err)
		}
	}
}

// A route configured by environment alone works end to end.
func TestConfiguredRouteEndToEnd(t *testing.T) {
	vendor := oauthtest.New(t, oauthtest.Config{ClientID: "cid", ClientSecret: "cs", JSONBody: true, Grants: []string{"client_credentials"}})
	a, err := build(t, map[string]string{
		"ROUTES":                  "vendor-api",
		"VENDOR_API_UPSTREAM_URL": vendor.URL + "/v1",
		"VENDOR_API_TOKEN_URL":    vendor.TokenURL(),
		"VENDOR_API_CLIENT_ID":    "cid", "VENDOR_API_CLIENT_SECRET": "cs",
		"VENDOR_API_CLIENT_AUTH": "body", "VENDOR_API_TOKEN_BODY": "json",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/vendor-api/things?a=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e issuer.Echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v, refused: %v", resp.StatusCode, err, vendor.BadRequests())
	}
	if e.Path != "/v1/things" || e.Query != "a=1" {
		t.Fatalf("upstream saw %q?%q", e.Path, e.Query)
	}
}

// SIGTERM drains: /readyz turns false first, calls in flight finish, and
// Serve returns once they have.
func TestServeDrainsInFlightCalls(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	}))
	defer slow.Close()
	cfg, err := config.LoadFrom(map[string]string{
		"ROUTES": "slow", "SLOW_UPSTREAM_URL": slow.URL, "SLOW_ACCESS_TOKEN": "t",
		"SHUTDOWN_DELAY": "200ms", "SHUTDOWN_TIMEOUT": "10s",
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	type result struct {
		status int
		body   string
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/slow/x")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-entered
	stop() // as SIGTERM does

	// During the shutdown delay the listener is still open and /readyz is false.
	notReady := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !notReady; {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			notReady = resp.StatusCode == http.StatusServiceUnavailable
			resp.Body.Close()
		}
	}
	if !notReady {
		t.Fatal("/readyz never turned false while draining")
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned with a call in flight: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	r := <-inflight
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight call: %+v", r)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
