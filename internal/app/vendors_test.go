package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/emulators"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/authsidecar/authsidecar/internal/issuer"
)

const (
	demoClientID     = "demo-client"
	demoClientSecret = "demo-client-secret"
	demoUser         = "robot@example.com"
	demoPassword     = "demo-password"
)

func vendorOptions(clock *fakeclock.Clock) emulators.Options {
	return emulators.Options{ClientID: demoClientID, ClientSecret: demoClientSecret,
		Username: demoUser, Password: demoPassword, Now: clock.Now}
}

// serve starts h on loopback for the test's life and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func sidecar(t *testing.T, env map[string]string, clock *fakeclock.Clock) (*App, string) {
	t.Helper()
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatal(err)
	}
	var opts []Option
	if clock != nil { // nil: the wall clock
		opts = append(opts, WithClock(clock.Now))
	}
	a, err := New(cfg, zap.NewNop(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, serve(t, a.Handler())
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, method, url string, body []byte, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

func (a answer) echo(t *testing.T) issuer.Echo {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var e issuer.Echo
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("not an echo: %s", a.body)
	}
	return e
}

func waitForCount(t *testing.T, emu emulators.Emulator, kind string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for emu.Stats().TokenRequests[kind] < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s requests: %d, want %d (refusals: %v)", kind, emu.Stats().TokenRequests[kind], want, emu.Stats().Refusals)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type vendorCase struct {
	name     string
	route    string
	emulator func(emulators.Options) emulators.Emulator
	env      func(url string, emu emulators.Emulator) map[string]string
	path     string // called through the sidecar
	first    string // token request kind of the first token
	refresh  string // and of every later one
	lifetime time.Duration
}

var vendorCases = []vendorCase{
	{
		name: "viewneo refresh token (from consent)", route: "viewneo",
		emulator: func(o emulators.Options) emulators.Emulator {
			o.AccessLifetime = 10 * time.Minute
			return emulators.NewViewneo(o)
		},
		env: func(url string, emu emulators.Emulator) map[string]string {
			return map[string]string{"VIEWNEO_UPSTREAM_URL": url, "VIEWNEO_CLIENT_ID": demoClientID, "VIEWNEO_CLIENT_SECRET": demoClientSecret,
				"VIEWNEO_REFRESH_TOKEN": emu.(*emulators.Viewneo).IssueRefreshToken()}
		},
		path: "/viewneo/api/v1.0/playlist", first: "refresh_token", refresh: "refresh_token", lifetime: 10 * time.Minute,
	},
	{
		name: "movingimage legacy login", route: "movingimage",
		emulator: func(o emulators.Options) emulators.Emulator { return emulators.NewMovingimage(o) },
		env: func(url string, _ emulators.Emulator) map[string]string {
			return map[string]string{"MOVINGIMAGE_UPSTREAM_URL": url, "MOVINGIMAGE_USERNAME": demoUser, "MOVINGIMAGE_PASSWORD": demoPassword}
		},
		path: "/movingimage/v1/vms/1001/videos", first: "login", refresh: "refresh_token", lifetime: 5 * time.Minute,
	},
	{
		name: "movingimage OpenID Connect", route: "movingimage",
		emulator: func(o emulators.Options) emulators.Emulator { return emulators.NewMovingimage(o) },
		env: func(url string, _ emulators.Emulator) map[string]string {
			return map[string]string{"MOVINGIMAGE_UPSTREAM_URL": url, "MOVINGIMAGE_USERNAME": demoUser, "MOVINGIMAGE_PASSWORD": demoPassword,
				"MOVINGIMAGE_AUTH": "oidc", "MOVINGIMAGE_TOKEN_URL": url + emulators.OIDCPath}
		},
		path: "/movingimage/v1/vms", first: "password", refresh: "refresh_token", lifetime: 5 * time.Minute,
	},
	{
		name: "veem client credentials", route: "veem",
		emulator: func(o emulators.Options) emulators.Emulator {
			o.AccessLifetime = time.Hour
			return emulators.NewVeem(o)
		},
		env: func(url string, _ emulators.Emulator) map[string]string {
			return map[string]string{"VEEM_UPSTREAM_URL": url, "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret}
		},
		path: "/veem/veem/v1.0/hello", first: "client_credentials", refresh: "refresh_token", lifetime: time.Hour,
	},
	{
		name: "veem client credentials without refresh token", route: "veem",
		emulator: func(o emulators.Options) emulators.Emulator {
			o.AccessLifetime = time.Hour
			v := emulators.NewVeem(o)
			v.ClientCredentialsWithoutRefresh = true
			return v
		},
		env: func(url string, _ emulators.Emulator) map[string]string {
			return map[string]string{"VEEM_UPSTREAM_URL": url, "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret}
		},
		path: "/veem/veem/v1.0/hello", first: "client_credentials", refresh: "client_credentials", lifetime: time.Hour,
	},
}

// Each vendor, against its strict emulator: first token, refresh ahead of
// expiry, 401 → refresh → replay, and rotation (the emulators' refresh
// tokens are single-use, so a reused one would be refused and revoke all).
func TestVendorTokenLifecycle(t *testing.T) {
	for _, vc := range vendorCases {
		t.Run(vc.name, func(t *testing.T) {
			clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
			emu := vc.emulator(vendorOptions(clock))
			url := serve(t, emu)
			env := vc.env(url, emu)
			env["ROUTES"] = vc.route
			_, side := sidecar(t, env, clock)
			count := func(kind string) int { return emu.Stats().TokenRequests[kind] }

			// First token.
			e := call(t, "GET", side+vc.path+"?page=1", nil, nil).echo(t)
			if want := strings.TrimPrefix(vc.path, "/"+vc.route); e.Path != want {
				t.Fatalf("upstream path %q, want %q", e.Path, want)
			}
			if count(vc.first) != 1 {
				t.Fatalf("first token: %v", emu.Stats())
			}
			before := count(vc.refresh)

			// Refresh ahead of expiry: 30 s before it the token is still
			// served, and a refresh runs.
			clock.Advance(vc.lifetime - 30*time.Second)
			if again := call(t, "GET", side+vc.path, nil, nil).echo(t); again.Header.Get("Authorization") != e.Header.Get("Authorization") {
				t.Fatal("a token still valid was not served while its refresh ran")
			}
			waitForCount(t, emu, vc.refresh, before+1)
			// The emulator counts the refresh when it answers; the sidecar
			// installs the token a moment later.
			for deadline := time.Now().Add(5 * time.Second); call(t, "GET", side+vc.path, nil, nil).echo(t).Header.Get("Authorization") == e.Header.Get("Authorization"); {
				if time.Now().After(deadline) {
					t.Fatal("the refreshed token was never served")
				}
				time.Sleep(2 * time.Millisecond)
			}
			if s := emu.Stats(); s.API401s != 0 {
				t.Fatalf("a call saw 401 during proactive refresh: %+v", s)
			}

			// 401 → refresh → replay, body and all.
			emu.ExpireAccess()
			body := make([]byte, 10<<10)
			rand.Read(body)
			sum := sha256.Sum256(body)
			e = call(t, "POST", side+vc.path, body, http.Header{"X-Request-Id": {"8d5f0c8e-5b0e-4a8e-9d7b-3c2f1e0a9b7c"}}).echo(t)
			if e.BodySHA256 != hex.EncodeToString(sum[:]) || e.Header.Get("X-Request-Id") != "8d5f0c8e-5b0e-4a8e-9d7b-3c2f1e0a9b7c" {
				t.Fatalf("replay lost the body or X-Request-Id: %+v", e)
			}
			if s := emu.Stats(); s.API401s != 1 || count(vc.refresh) != before+2 {
				t.Fatalf("after 401: %+v", s)
			}

			// Several more expiries: every refresh token is used once.
			for range 3 {
				clock.Advance(vc.lifetime + time.Second)
				call(t, "GET", side+vc.path, nil, nil).echo(t)
			}
			if s := emu.Stats(); len(s.Refusals) != 0 || count(vc.refresh) != before+5 {
				t.Fatalf("rotation: %d refreshes, refusals %v", count(vc.refresh)-before, s.Refusals)
			}
		})
	}
}

// A preset that drifts from its vendor's dialect is refused by the emulator,
// so these tests would catch it.
func TestEmulatorsRefuseDriftedRequests(t *testing.T) {
	tests := []struct {
		name     string
		emulator func(emulators.Options) emulators.Emulator
		env      func(url string, emu emulators.Emulator) map[string]string
		path     string
		refusal  string
	}{
		{
			name:     "viewneo: form where JSON is due",
			emulator: func(o emulators.Options) emulators.Emulator { return emulators.NewViewneo(o) },
			env: func(url string, emu emulators.Emulator) map[string]string {
				return map[string]string{"ROUTES": "viewneo", "VIEWNEO_UPSTREAM_URL": url, "VIEWNEO_CLIENT_ID": demoClientID, "VIEWNEO_CLIENT_SECRET": demoClientSecret,
					"VIEWNEO_REFRESH_TOKEN": emu.(*emulators.Viewneo).IssueRefreshToken(), "VIEWNEO_TOKEN_BODY": "form"}
			},
			path: "/viewneo/api/v1.0/playlist", refusal: "must be JSON",
		},
		{
			name:     "viewneo: Basic where body credentials are due",
			emulator: func(o emulators.Options) emulators.Emulator { return emulators.NewViewneo(o) },
			env: func(url string, emu emulators.Emulator) map[string]string {
				return map[string]string{"ROUTES": "viewneo", "VIEWNEO_UPSTREAM_URL": url, "VIEWNEO_CLIENT_ID": demoClientID, "VIEWNEO_CLIENT_SECRET": demoClientSecret,
					"VIEWNEO_REFRESH_TOKEN": emu.(*emulators.Viewneo).IssueRefreshToken(), "VIEWNEO_CLIENT_AUTH": "basic"}
			},
			path: "/viewneo/api/v1.0/playlist", refusal: "not an Authorization header",
		},
		{
			name:     "veem: missing Basic",
			emulator: func(o emulators.Options) emulators.Emulator { return emulators.NewVeem(o) },
			env: func(url string, _ emulators.Emulator) map[string]string {
				return map[string]string{"ROUTES": "veem", "VEEM_UPSTREAM_URL": url, "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret, "VEEM_CLIENT_AUTH": "body"}
			},
			path: "/veem/veem/v1.0/hello", refusal: "must be HTTP Basic",
		},
		{
			name:     "veem: refresh token in the body (the generic dialect)",
			emulator: func(o emulators.Options) emulators.Emulator { return emulators.NewVeem(o) },
			env: func(url string, emu emulators.Emulator) map[string]string {
				// A refresh token from an earlier client-credentials grant.
				rt := veemRefreshToken(t, url)
				return map[string]string{"ROUTES": "veem", "VEEM_PRESET": "oauth2", "VEEM_UPSTREAM_URL": url, "VEEM_TOKEN_URL": url + "/oauth/token",
					"VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret, "VEEM_REFRESH_TOKEN": rt}
			},
			path: "/veem/veem/v1.0/hello", refusal: "goes in the query string",
		},
		{
			name:     "movingimage: form login",
			emulator: func(o emulators.Options) emulators.Emulator { return emulators.NewMovingimage(o) },
			env: func(url string, _ emulators.Emulator) map[string]string {
				return map[string]string{"ROUTES": "movingimage", "MOVINGIMAGE_UPSTREAM_URL": url, "MOVINGIMAGE_USERNAME": demoUser, "MOVINGIMAGE_PASSWORD": demoPassword, "MOVINGIMAGE_TOKEN_BODY": "form"}
			},
			path: "/movingimage/v1/vms", refusal: "must be JSON",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := fakeclock.New(time.Now())
			emu := tt.emulator(vendorOptions(clock))
			url := serve(t, emu)
			_, side := sidecar(t, tt.env(url, emu), clock)
			a := call(t, "GET", side+tt.path, nil, nil)
			if a.status != http.StatusBadGateway || !strings.Contains(string(a.body), "token_rejected") {
				t.Fatalf("status %d %s, want 502 token_rejected", a.status, a.body)
			}
			refusals := strings.Join(emu.Stats().Refusals, "; ")
			if !strings.Contains(refusals, tt.refusal) {
				t.Fatalf("emulator refusals %q, want one with %q", refusals, tt.refusal)
			}
		})
	}
}

// veemRefreshToken gets a refresh token from the Veem emulator the way the
// preset does, to hand to a drifted configuration.
func veemRefreshToken(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=all"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(demoClientID, demoClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token from the Veem emulator")
	}
	return tok.RefreshToken
}

// movingimage: MOVINGIMAGE_VIDEOMANAGER_ID switches the token to that
// VideoManager after login, and once the refresh token's own exp has passed
// the sidecar logs in with the password instead of refreshing.
func TestMovingimageVideoManagerAndRelogin(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	emu := emulators.NewMovingimage(vendorOptions(clock))
	url := serve(t, emu)
	_, side := sidecar(t, map[string]string{
		"ROUTES": "movingimage", "MOVINGIMAGE_UPSTREAM_URL": url,
		"MOVINGIMAGE_USERNAME": demoUser, "MOVINGIMAGE_PASSWORD": demoPassword, "MOVINGIMAGE_VIDEOMANAGER_ID": "1002",
	}, clock)

	// The login picks 1001; the token must be switched to 1002, for which
	// the emulator's API refuses a 1001 token with 403.
	call(t, "GET", side+"/movingimage/v1/vms/1002/videos", nil, nil).echo(t)
	if s := emu.Stats(); s.TokenRequests["login"] != 1 || s.TokenRequests["refresh_token"] != 1 {
		t.Fatalf("login then switch: %+v", s)
	}
	// Past the refresh token's hour: a new login, not a refused refresh.
	clock.Advance(61 * time.Minute)
	call(t, "GET", side+"/movingimage/v1/vms/1002/videos", nil, nil).echo(t)
	if s := emu.Stats(); s.TokenRequests["login"] != 2 || len(s.Refusals) != 0 {
		t.Fatalf("after the refresh token expired: %+v", s)
	}
}

// Viadeo with a configured token: it goes in the query string, and a
// refused one — with a 401, or with a 200 and Viadeo's error body — turns
// into a consent error that says how to fix it.
func TestViadeoConfiguredToken(t *testing.T) {
	for _, with200 := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused with 401", true: "refused with 200"}[with200], func(t *testing.T) {
			testViadeoConfiguredToken(t, with200)
		})
	}
}

func testViadeoConfiguredToken(t *testing.T, refuseWith200 bool) {
	clock := fakeclock.New(time.Now())
	emu := emulators.NewViadeo(vendorOptions(clock))
	emu.RefuseWith200 = refuseWith200
	url := serve(t, emu)
	_, side := sidecar(t, map[string]string{"ROUTES": "viadeo", "VIADEO_UPSTREAM_URL": url, "VIADEO_ACCESS_TOKEN": emu.IssueAccessToken()}, clock)
	e := call(t, "GET", side+"/viadeo/search/users?keywords=go&access_token=callers", nil, http.Header{"Authorization": {"Bearer callers"}}).echo(t)
	if !strings.Contains(e.Query, "keywords=go") || strings.Contains(e.Query, "callers") || e.Header.Get("Authorization") != "" {
		t.Fatalf("upstream saw query %q, Authorization %q", e.Query, e.Header.Get("Authorization"))
	}
	emu.RevokeAll()
	a := call(t, "GET", side+"/viadeo/me", nil, nil)
	if a.status != http.StatusBadGateway || !strings.Contains(string(a.body), "consent_required") || !strings.Contains(string(a.body), "VIADEO_ACCESS_TOKEN") {
		t.Fatalf("revoked: %d %s", a.status, a.body)
	}
	if s := emu.Stats(); s.APICalls != 2 {
		t.Fatalf("API calls %d, want 2: a refused Viadeo token is not replayed", s.APICalls)
	}
}

// An ordinary JSON answer from Viadeo reaches the caller whole, however
// large, though the sidecar looked at its head for a refusal.
func TestViadeoAnswersPassIntactAfterThePeek(t *testing.T) {
	big := strings.Repeat("x", 10_000)
	upstream := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/small" {
			io.WriteString(w, `{"name":"Ada"}`)
			return
		}
		io.WriteString(w, `{"blob":"`+big+`"}`)
	}))
	_, side := sidecar(t, map[string]string{"ROUTES": "viadeo", "VIADEO_UPSTREAM_URL": upstream, "VIADEO_ACCESS_TOKEN": "t"}, fakeclock.New(time.Now()))
	if a := call(t, "GET", side+"/viadeo/small", nil, nil); a.status != 200 || string(a.body) != `{"name":"Ada"}` {
		t.Fatalf("small answer: %d %q", a.status, a.body)
	}
	if a := call(t, "GET", side+"/viadeo/big", nil, nil); a.status != 200 || len(a.body) != len(big)+11 {
		t.Fatalf("big answer: %d, %d bytes", a.status, len(a.body))
	}
}

// A second account of a vendor runs on another route with NAME_PRESET, and
// the two never share a token.
func TestSecondAccountOnAnotherRoute(t *testing.T) {
	clock := fakeclock.New(time.Now())
	emu := emulators.NewMovingimage(vendorOptions(clock))
	url := serve(t, emu)
	_, side := sidecar(t, map[string]string{
		"ROUTES":                   "movingimage,archive",
		"MOVINGIMAGE_UPSTREAM_URL": url, "MOVINGIMAGE_USERNAME": demoUser, "MOVINGIMAGE_PASSWORD": demoPassword,
		"ARCHIVE_PRESET": "movingimage", "ARCHIVE_UPSTREAM_URL": url, "ARCHIVE_USERNAME": demoUser, "ARCHIVE_PASSWORD": demoPassword,
		"ARCHIVE_VIDEOMANAGER_ID": "1002",
	}, clock)
	first := call(t, "GET", side+"/movingimage/v1/vms/1001/videos", nil, nil).echo(t)
	second := call(t, "GET", side+"/archive/v1/vms/1002/videos", nil, nil).echo(t)
	if first.Header.Get("Authorization") == second.Header.Get("Authorization") {
		t.Fatal("two routes share one token")
	}
	if n := emu.Stats().TokenRequests["login"]; n != 2 {
		t.Fatalf("%d logins, want one per route", n)
	}
}

// startLoad calls url from four callers at once until stop, which reports
// how many calls failed (no answer, or not 200) and why the first did.
func startLoad(url string) (stop func() (failed int, first string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed, first := 0, ""
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				why := ""
				resp, err := http.Get(url)
				if err != nil {
					why = err.Error()
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						why = resp.Status
					}
				}
				if why != "" {
					mu.Lock()
					if failed++; first == "" {
						first = why
					}
					mu.Unlock()
				}
			}
		}()
	}
	return func() (int, string) {
		cancel()
		wg.Wait()
		return failed, first
	}
}
