package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/authsidecar/authsidecar/internal/emulators"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(b)
}

// After proxied calls, a replay, refreshes, a wait on a sibling's lock and a
// store failure, /metrics shows each figure — and no path or secret.
func TestMetricsShowWhatHappened(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Now())
	o := vendorOptions(clock)
	o.AccessLifetime = time.Hour
	veem := emulators.NewVeem(o)
	gate := &heldTokenCall{next: veem, held: make(chan struct{}), release: make(chan struct{})}
	env := map[string]string{
		"ROUTES": "veem", "VEEM_UPSTREAM_URL": serve(t, gate), "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret,
		"REDIS_URL": "redis://" + mr.Addr(), "TOKEN_ENCRYPTION_KEY": testKey,
	}
	a, side := sidecar(t, env, clock)
	_, sibling := sidecar(t, env, clock)
	const path = "/veem/veem/v1.0/hello-metrics"

	call(t, "GET", side+path, nil, nil).echo(t)
	call(t, "POST", side+path, []byte("{}"), nil).echo(t)
	veem.ExpireAccess()
	call(t, "GET", side+path, nil, nil).echo(t) // 401, refresh, replay

	// A sibling holds the refresh lock when the token expires: this
	// replica waits for it (and, when the sibling's refresh fails,
	// refreshes itself).
	clock.Advance(2 * time.Hour)
	gate.arm()
	siblingDone := make(chan struct{})
	go func() {
		defer close(siblingDone)
		call(t, "GET", sibling+path, nil, nil)
	}()
	<-gate.held
	waited := make(chan answer, 1)
	go func() { waited <- call(t, "GET", side+path, nil, nil) }()
	waitFor(t, "this replica to wait for the sibling's lock", func() bool {
		return strings.Contains(scrape(t, side), `authsidecar_refresh_lock_waits_total{route="veem"}`)
	})
	close(gate.release)
	(<-waited).echo(t)
	<-siblingDone

	// Redis goes away.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.watchStore(ctx, 10*time.Millisecond)
	mr.Close()
	clock.Advance(2 * time.Hour)
	call(t, "GET", side+path, nil, nil).echo(t)
	waitForState(t, side, "degraded")

	text := scrape(t, side)
	for _, want := range []string{
		`authsidecar_requests_total{code="2xx",method="GET",route="veem"} 4`,
		`authsidecar_requests_total{code="2xx",method="POST",route="veem"} 1`,
		`authsidecar_request_duration_seconds_count{code="2xx",route="veem"} 5`,
		`authsidecar_replays_total{outcome="replayed",route="veem"} 1`,
		`authsidecar_token_refreshes_total{result="success",route="veem"} 4`,
		`authsidecar_token_refresh_duration_seconds_count{route="veem"} 4`,
		`authsidecar_refresh_lock_waits_total{route="veem"}`,
		`authsidecar_store_errors_total{route="veem"}`,
		`authsidecar_store_degraded 1`,
		`authsidecar_token_expiry_timestamp_seconds{route="veem"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, leak := range append(veem.Secrets(), "hello-metrics", demoClientSecret) {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics holds a path or secret: %.12s…", leak)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// heldTokenCall holds the first token request after arm until release, then
// fails it, as a token endpoint that times out for one replica.
type heldTokenCall struct {
	next          http.Handler
	armed         atomic.Bool
	held, release chan struct{}
}

func (g *heldTokenCall) arm() { g.armed.Store(true) }

func (g *heldTokenCall) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/token") && g.armed.CompareAndSwap(true, false) {
		close(g.held)
		<-g.release
		http.Error(w, "gateway timeout", http.StatusGatewayTimeout)
		return
	}
	g.next.ServeHTTP(w, r)
}

// waitFor polls cond, bounded; it waits for background work to land.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestClientKeys(t *testing.T) {
	clock := fakeclock.New(time.Now())
	veem := emulators.NewVeem(vendorOptions(clock))
	_, side := sidecar(t, map[string]string{
		"ROUTES": "veem", "VEEM_UPSTREAM_URL": serve(t, veem), "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret,
		"CLIENT_KEYS": "first-key-0123456789, second-key-0123456789",
	}, clock)
	for _, key := range []string{"", "wrong-key-0123456789", "first-key-012345678"} {
		a := call(t, "GET", side+"/veem/veem/v1.0/hello", nil, http.Header{"X-Authsidecar-Key": {key}})
		if a.status != http.StatusUnauthorized || !strings.Contains(string(a.body), "client_key_required") {
			t.Errorf("key %q: %d %s", key, a.status, a.body)
		}
	}
	if a := call(t, "GET", side+"/nope", nil, nil); a.status != http.StatusUnauthorized {
		t.Errorf("an unknown route without a key listed the routes: %d", a.status)
	}
	e := call(t, "GET", side+"/veem/veem/v1.0/hello", nil, http.Header{"X-Authsidecar-Key": {"second-key-0123456789"}}).echo(t)
	if e.Header.Get("X-Authsidecar-Key") != "" {
		t.Fatal("the client key was forwarded to the vendor")
	}
	if a := call(t, "GET", side+"/readyz", nil, nil); a.status != 200 {
		t.Errorf("/readyz needs no key: %d", a.status)
	}
	if veem.Stats().APICalls != 1 {
		t.Errorf("calls without a good key reached the vendor: %d", veem.Stats().APICalls)
	}
}
