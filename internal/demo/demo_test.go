package demo

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/internal/app"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/logtest"
	"go.uber.org/zap"
)

// The commands the demo prints work, in order, against what it starts.
func TestDemoCommandsWork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log, logs := logtest.New()
	d, err := Start(ln, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	var intro bytes.Buffer
	d.PrintIntro(&intro)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	want := []struct {
		status   int
		contains string
	}{
		{200, `"vendor":"viewneo"`},
		{200, `"user":"acme@customer.example"`},
		{200, `"user":"globex@customer.example"`},
		{200, `"vendor":"movingimage"`},
		{200, `"vendor":"veem"`},
		{502, `"consent_url":"/oauth/viadeo/start"`},
		{200, "Connected"},
		{200, `"vendor":"viadeo"`},
		{200, "expired"},
		{200, `"vendor":"viewneo"`},
	}
	if len(d.Commands) != len(want) {
		t.Fatalf("%d commands, want %d", len(d.Commands), len(want))
	}
	for i, c := range d.Commands {
		if !strings.Contains(intro.String(), c.Curl) {
			t.Errorf("command %d not printed: %s", i, c.Curl)
		}
		method := c.Method
		if method == "CONSENT" {
			method = "GET"
		}
		var body io.Reader
		if method == "POST" && c.Header != nil {
			body = strings.NewReader(`{"amount":1}`)
		}
		req, _ := http.NewRequest(method, c.Base+c.Path, body)
		for k, v := range c.Header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want[i].status || !strings.Contains(string(got), want[i].contains) {
			t.Errorf("%s: %d %s; want %d with %s", c.Curl, resp.StatusCode, got, want[i].status, want[i].contains)
		}
	}
	// The last call was replayed after the emulator expired its tokens.
	logs.WaitFor(t, `"replayed":true`)
}

// Regression: the demo's "point your own configuration at the emulators"
// did not work for Viadeo, whose auth endpoints do not follow its upstream.
// A sidecar configured from exactly what the demo prints consents and calls.
func TestOwnConfigurationWorksForViadeo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(ln, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + own.Addr().String()
	env := map[string]string{"ROUTES": "viadeo", "VIADEO_CLIENT_ID": clientID, "VIADEO_CLIENT_SECRET": clientSecret,
		"VIADEO_REDIRECT_URL": base + "/oauth/viadeo/callback"}
	for _, line := range d.OwnConfiguration() {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := &http.Server{Handler: a.Handler()}
	go srv.Serve(own)
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	for _, step := range []struct{ path, want string }{
		{"/oauth/viadeo/start", "Connected"},
		{"/viadeo/me", `"vendor":"viadeo"`},
	} {
		resp, err := client.Get(base + step.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), step.want) {
			t.Fatalf("%s: %d %s", step.path, resp.StatusCode, body)
		}
	}
}
