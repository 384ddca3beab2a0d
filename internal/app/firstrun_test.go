package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/emulators"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/authsidecar/authsidecar/internal/logtest"
)

// loggedSidecar is a sidecar whose log lines the test reads.
func loggedSidecar(t *testing.T, env map[string]string) (string, *logtest.Buffer) {
	t.Helper()
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatal(err)
	}
	log, logs := logtest.New()
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return serve(t, a.Handler()), logs
}

func veemEnv(t *testing.T) map[string]string {
	clock := fakeclock.New(time.Now())
	veem := emulators.NewVeem(vendorOptions(clock))
	return map[string]string{"ROUTES": "veem", "VEEM_UPSTREAM_URL": serve(t, veem),
		"VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret}
}

func jsonOf(t *testing.T, a answer) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("%d %s: %v", a.status, a.body, err)
	}
	return m
}

// Regression: ?verbose=false was verbose; the reserved /status answered
// "no route".
func TestReadyzVerboseFlagAndStatus(t *testing.T) {
	side, _ := loggedSidecar(t, veemEnv(t))
	for _, tt := range []struct {
		path    string
		verbose bool
	}{
		{"/readyz", false}, {"/readyz?verbose", true}, {"/readyz?verbose=1", true},
		{"/readyz?verbose=false", false}, {"/readyz?verbose=0", false}, {"/status", true},
	} {
		a := call(t, "GET", side+tt.path, nil, nil)
		if a.status != http.StatusOK {
			t.Errorf("%s: %d %s", tt.path, a.status, a.body)
			continue
		}
		if _, has := jsonOf(t, a)["routes"]; has != tt.verbose {
			t.Errorf("%s: routes listed = %v, want %v", tt.path, has, tt.verbose)
		}
	}
}

// Regression: calls to an unknown route left no trace; log lines did not
// carry the caller's X-Request-Id.
func TestUnknownRoutesAreLoggedAndCounted(t *testing.T) {
	side, logs := loggedSidecar(t, veemEnv(t))
	a := call(t, "GET", side+"/veeem/v1/x", nil, http.Header{"X-Request-Id": {"req-42"}})
	if a.status != http.StatusNotFound || jsonOf(t, a)["error"] != "unknown_route" {
		t.Fatalf("unknown route: %d %s", a.status, a.body)
	}
	logs.WaitFor(t, `"msg":"unknown route"`)
	logs.WaitFor(t, `"request_id":"req-42"`)
	if !strings.Contains(scrape(t, side), "authsidecar_unknown_route_requests_total 1") {
		t.Error("the unknown route was not counted")
	}
	call(t, "GET", side+"/veem/veem/v1.0/hello", nil, http.Header{"X-Request-Id": {"req-43"}}).echo(t)
	logs.WaitFor(t, `"request_id":"req-43"`)
}

// Regression: /oauth/nosuch/start said "needs a REDIRECT_URL" for a route
// that does not exist.
func TestConsentForAnUnknownRouteSaysSo(t *testing.T) {
	side, _ := loggedSidecar(t, veemEnv(t))
	a := call(t, "GET", side+"/oauth/nosuch/start", nil, nil)
	if m := jsonOf(t, a); a.status != http.StatusNotFound || m["error"] != "unknown_route" || !strings.Contains(m["message"].(string), `no route "nosuch"`) {
		t.Errorf("unknown route: %d %s", a.status, a.body)
	}
	a = call(t, "GET", side+"/oauth/veem/start", nil, nil)
	if m := jsonOf(t, a); a.status != http.StatusNotFound || m["error"] != "no_consent_flow" || !strings.Contains(m["message"].(string), "REDIRECT_URL") {
		t.Errorf("route without consent: %d %s", a.status, a.body)
	}
}
