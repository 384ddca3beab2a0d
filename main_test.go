package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path != "/readyz" && r.URL.Path != "/healthz") || (r.URL.Path == "/readyz" && !ready) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))

	// A sidecar listening on every address is asked on loopback.
	t.Setenv("LISTEN_ADDR", "0.0.0.0:"+port)
	if err := healthcheck("/readyz"); err != nil {
		t.Fatalf("ready sidecar: %v", err)
	}
	ready = false
	if err := healthcheck("/readyz"); err == nil {
		t.Fatal("a draining sidecar passed the readiness check")
	}
	if err := healthcheck("/healthz"); err != nil {
		t.Fatalf("a draining sidecar failed the liveness check: %v", err)
	}
	srv.Close()
	if err := healthcheck("/readyz"); err == nil {
		t.Fatal("no sidecar passed the health check")
	}
}

// `authsidecar injector` is the injector itself, configured by INJECTOR_*
// variables: a bad setting stops it with the variable's name.
func TestInjectorSubcommand(t *testing.T) {
	t.Setenv("INJECTOR_SIDECAR_IMAGE", "")
	t.Setenv("INJECTOR_LISTEN_ADDR", ":bad")
	err := run([]string{"injector"})
	if err == nil || !strings.Contains(err.Error(), "injector: configuration: INJECTOR_SIDECAR_IMAGE") {
		t.Fatalf("injector with no sidecar image: %v", err)
	}
	if err := run([]string{"injector", "--port", "1"}); err == nil || !strings.Contains(err.Error(), "INJECTOR_* variables") {
		t.Fatalf("injector with arguments: %v", err)
	}
}

// Commands configured by the environment refuse arguments rather than
// ignore them; healthcheck takes only "live", so a liveness probe with a
// typo does not quietly check readiness (a draining sidecar would be
// restarted).
func TestCommandsRefuseStrayArguments(t *testing.T) {
	for _, args := range [][]string{
		{"healthcheck", "ready"}, {"healthcheck", "--live"}, {"healthcheck", "live", "extra"},
		{"serve", "--port", "9000"}, {"version", "extra"},
	} {
		err := run(args)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: %v, want an error naming the command", args, err)
		}
	}
}
