package app

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/emulators"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/authsidecar/authsidecar/internal/logtest"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func readyz(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 200 || body["ready"] != true {
		t.Fatalf("/readyz: %d %v", resp.StatusCode, body)
	}
	return body
}

// Two sidecars on one Redis share a token, consent given through one serves
// the other, /readyz says when Redis is away, and nothing stops working.
func TestSidecarsShareTokensThroughRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Now())
	o := vendorOptions(clock)
	side := newConsentSidecar(t) // replica 1, on a known URL for the callback
	o.RedirectURL = side.url + "/oauth/veem/callback"
	o.AccessLifetime = time.Hour
	veem := emulators.NewVeem(o)
	veemURL := serve(t, veem)
	env := map[string]string{
		"ROUTES": "veem", "VEEM_UPSTREAM_URL": veemURL, "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret,
		"VEEM_GRANT": "authorization_code", "VEEM_REDIRECT_URL": o.RedirectURL,
		"REDIS_URL": "redis://" + mr.Addr(), "TOKEN_ENCRYPTION_KEY": testKey,
	}
	side.start(t, env, clock)
	second, secondURL := sidecar(t, env, clock) // replica 2

	// Consent through replica 1 serves replica 2.
	if status, page := newBrowser(t).get(t, side.url+"/oauth/veem/start"); status != 200 {
		t.Fatalf("consent: %d %s", status, page)
	}
	call(t, "GET", secondURL+"/veem/veem/v1.0/hello", nil, nil).echo(t)
	if n := veem.Stats().TokenRequests; n["authorization_code"] != 1 || n["refresh_token"] != 0 {
		t.Fatalf("replica 2 did not use the token consent stored: %v", n)
	}

	// Redis goes away: calls go on, and /readyz says the store is degraded.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go second.watchStore(ctx, 10*time.Millisecond)
	if got := readyz(t, secondURL)["store_state"]; got != "ok" {
		t.Fatalf("store_state %v before the outage", got)
	}
	mr.Close()
	waitForState(t, secondURL, "degraded")
	call(t, "GET", secondURL+"/veem/veem/v1.0/hello", nil, nil).echo(t)
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	waitForState(t, secondURL, "ok")
	routes := readyz(t, secondURL)["routes"].(map[string]any)
	if r := routes["veem"].(map[string]any); r["token"] != true {
		t.Fatalf("verbose /readyz: %v", r)
	}
}

func waitForState(t *testing.T, url, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		state, _ := readyz(t, url)["store_state"].(string)
		if strings.HasPrefix(state, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store_state stayed %q, want %q", state, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Regression: go-redis wrote its own plain-text lines into a JSON log. They
// go through the sidecar's logger now.
func TestRedisMessagesGoThroughTheLogger(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	mr.Close() // go-redis will complain about dialling
	cfg, err := config.LoadFrom(map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": "http://127.0.0.1:1/token", "API_CLIENT_ID": "id", "API_CLIENT_SECRET": "secret",
		"REDIS_URL": "redis://" + addr, "TOKEN_ENCRYPTION_KEY": testKey})
	if err != nil {
		t.Fatal(err)
	}
	log, logs := logtest.New()
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Tokens come through the store: go-redis dials, fails, and says so.
	a.routes.All()[0].Keeper.Token(ctx)
	logs.WaitFor(t, `"logger":"redis"`)
}

// slowProxy forwards TCP to target, holding every answer for delay: a Redis
// that answers, but too slowly.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if err != nil {
						return
					}
					time.Sleep(delay)
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// Regression: a Redis answering in 1.5 s stalled calls for 6 s and then
// failed client-credentials routes, blaming the token endpoint. Each store
// operation has a deadline; a slow store counts as down, and /readyz says
// why.
func TestSlowRedisCountsAsDown(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Now())
	veem := emulators.NewVeem(vendorOptions(clock))
	a, side := sidecar(t, map[string]string{
		"ROUTES": "veem", "VEEM_UPSTREAM_URL": serve(t, veem), "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret,
		"REDIS_URL": "redis://" + slowProxy(t, mr.Addr(), 1500*time.Millisecond), "TOKEN_ENCRYPTION_KEY": testKey,
		"STORE_TIMEOUT": "200ms",
	}, clock)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.watchStore(ctx, 50*time.Millisecond)

	start := time.Now()
	call(t, "GET", side+"/veem/veem/v1.0/hello", nil, nil).echo(t)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a call took %s behind a slow Redis", took)
	}
	waitForState(t, side, "degraded: Redis answers slower than STORE_TIMEOUT")
}
