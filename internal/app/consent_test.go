package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/emulators"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

// consentSidecar starts the sidecar on a URL known before it is built, so
// its callback can be the redirect URL registered with the emulator.
type consentSidecar struct {
	url     string
	handler atomic.Value // http.Handler
}

func newConsentSidecar(t *testing.T) *consentSidecar {
	s := &consentSidecar{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handler.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *consentSidecar) start(t *testing.T, env map[string]string, clock *fakeclock.Clock) *App {
	t.Helper()
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, zap.NewNop(), WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	s.handler.Store(http.Handler(a.Handler()))
	return a
}

// browser is an HTTP client that keeps cookies and follows redirects, as a
// person's browser does; it records the last URL it was sent to.
type browser struct {
	*http.Client
	last *url.URL
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{}
	b.Client = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		b.last = req.URL
		return nil
	}}
	return b
}

func (b *browser) get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

type viadeoSetup struct {
	emu   *emulators.Viadeo
	side  *consentSidecar
	app   *App
	clock *fakeclock.Clock
}

func setupViadeo(t *testing.T, extraEnv map[string]string, deny bool) viadeoSetup {
	t.Helper()
	clock := fakeclock.New(time.Now())
	side := newConsentSidecar(t)
	o := vendorOptions(clock)
	o.RedirectURL = side.url + "/oauth/viadeo/callback"
	o.DenyConsent = deny
	emu := emulators.NewViadeo(o)
	emu.FormAnswers = true // the answer may come form-encoded
	emuURL := serve(t, emu)
	env := map[string]string{
		"ROUTES": "viadeo", "VIADEO_UPSTREAM_URL": emuURL,
		"VIADEO_AUTHORIZE_URL": emuURL + "/oauth-provider/authorize2",
		"VIADEO_TOKEN_URL":     emuURL + "/oauth-provider/access_token2",
		"VIADEO_REVOKE_URL":    emuURL + "/oauth-provider/revoke_access_token2",
		"VIADEO_CLIENT_ID":     demoClientID, "VIADEO_CLIENT_SECRET": demoClientSecret,
		"VIADEO_REDIRECT_URL": o.RedirectURL,
	}
	for k, v := range extraEnv {
		env[k] = v
	}
	return viadeoSetup{emu: emu, side: side, app: side.start(t, env, clock), clock: clock}
}

func TestConsentFlowConnectsViadeoAndAsksAgainWhenRevoked(t *testing.T) {
	v := setupViadeo(t, nil, false)

	// Not connected yet: the caller is told where to consent.
	a := call(t, "GET", v.side.url+"/viadeo/me", nil, nil)
	var e struct {
		Error      string `json:"error"`
		ConsentURL string `json:"consent_url"`
	}
	json.Unmarshal(a.body, &e)
	if a.status != http.StatusBadGateway || e.Error != "consent_required" || e.ConsentURL != "/oauth/viadeo/start" {
		t.Fatalf("before consent: %d %s", a.status, a.body)
	}

	// Consent, through every redirect.
	b := newBrowser(t)
	status, page := b.get(t, v.side.url+"/oauth/viadeo/start")
	if status != http.StatusOK || !strings.Contains(page, "Connected") {
		t.Fatalf("consent: %d %s (refusals %v)", status, page, v.emu.Stats().Refusals)
	}

	// The token travels in the query string, on GET and POST alike.
	for _, method := range []string{"GET", "POST"} {
		echo := call(t, method, v.side.url+"/viadeo/me?fields=name", []byte("x=1"), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}).echo(t)
		q, _ := url.ParseQuery(echo.Query)
		if q.Get("access_token") == "" || q.Get("fields") != "name" || echo.Header.Get("Authorization") != "" {
			t.Fatalf("%s: upstream saw query %q, Authorization %q", method, echo.Query, echo.Header.Get("Authorization"))
		}
	}

	// Revoked at Viadeo: no refresh exists, so the caller is told to
	// consent again, not handed a bare 401.
	v.emu.RevokeAll()
	a = call(t, "GET", v.side.url+"/viadeo/me", nil, nil)
	json.Unmarshal(a.body, &e)
	if a.status != http.StatusBadGateway || e.Error != "consent_required" || e.ConsentURL != "/oauth/viadeo/start" || !strings.Contains(string(a.body), "no refresh") {
		t.Fatalf("after revocation: %d %s", a.status, a.body)
	}
	// The connection no longer works, so consent may be given again
	// without the admin token.
	if status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start"); status != http.StatusOK {
		t.Fatalf("second consent: %d %s", status, page)
	}
	call(t, "GET", v.side.url+"/viadeo/me", nil, nil).echo(t)
}

func TestConsentRefusesForgedAndReplayedState(t *testing.T) {
	v := setupViadeo(t, nil, false)

	// A forged state, with or without this browser's cookie.
	b := newBrowser(t)
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := b.Get(v.side.url + "/oauth/viadeo/start")
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("start: %v %v", resp, err)
	}
	authorizeURL, _ := url.Parse(resp.Header.Get("Location"))
	aq := authorizeURL.Query()
	if aq.Get("client_id") != demoClientID || aq.Get("response_type") != "code" || aq.Get("redirect_uri") != v.side.url+"/oauth/viadeo/callback" || len(aq.Get("state")) < 40 {
		t.Fatalf("authorize URL %s", authorizeURL)
	}
	for _, forged := range []string{"forged", aq.Get("state") + "x", ""} {
		status, page := b.get(t, v.side.url+"/oauth/viadeo/callback?code=whatever&state="+url.QueryEscape(forged))
		if status != http.StatusBadRequest || !strings.Contains(page, "State mismatch") {
			t.Fatalf("forged state %q: %d %s", forged, status, page)
		}
	}
	// The right state from another browser (no cookie).
	status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/callback?code=whatever&state="+url.QueryEscape(aq.Get("state")))
	if status != http.StatusBadRequest || !strings.Contains(page, "State mismatch") {
		t.Fatalf("state from another browser: %d %s", status, page)
	}

	// A real consent, then its callback replayed with the same cookie.
	b = newBrowser(t)
	if status, page := b.get(t, v.side.url+"/oauth/viadeo/start"); status != http.StatusOK {
		t.Fatalf("consent: %d %s", status, page)
	}
	callback := *b.last
	state := callback.Query().Get("state")
	req, _ := http.NewRequest("GET", callback.String(), nil)
	req.AddCookie(&http.Cookie{Name: "authsidecar_consent_viadeo", Value: state})
	replay, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(replay.Body)
	replay.Body.Close()
	if replay.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "already completed or has expired") {
		t.Fatalf("replayed callback: %d %s", replay.StatusCode, body)
	}
	if n := v.emu.Stats().TokenRequests["authorization_code"]; n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
}

func TestConsentShowsVendorRefusal(t *testing.T) {
	v := setupViadeo(t, nil, true)
	status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start")
	if status != http.StatusForbidden || !strings.Contains(page, "access_denied") {
		t.Fatalf("denied consent: %d %s", status, page)
	}
}

func TestConsentGuard(t *testing.T) {
	t.Run("admin token required when set", func(t *testing.T) {
		v := setupViadeo(t, map[string]string{"ADMIN_TOKEN": "operator-secret-0123456789"}, false)
		if status, _ := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start"); status != http.StatusUnauthorized {
			t.Fatalf("without the admin token: %d", status)
		}
		b := newBrowser(t)
		req, _ := http.NewRequest("GET", v.side.url+"/oauth/viadeo/start", nil)
		req.SetBasicAuth("admin", "wrong")
		if resp, _ := b.Do(req); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("with a wrong admin token: %d", resp.StatusCode)
		}
		req.SetBasicAuth("admin", "operator-secret-0123456789")
		resp, err := b.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("with the admin token: %v %v", resp, err)
		}
	})
	t.Run("without admin token a working connection is kept", func(t *testing.T) {
		v := setupViadeo(t, map[string]string{"VIADEO_ACCESS_TOKEN": ""}, false)
		if status, _ := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start"); status != http.StatusOK {
			t.Fatal("first consent refused")
		}
		status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start")
		if status != http.StatusConflict || !strings.Contains(page, "ADMIN_TOKEN") {
			t.Fatalf("replacing a working connection: %d %s", status, page)
		}
	})
}

// viewneo and Veem exchange codes in their own dialects (JSON with body
// credentials; Basic and form with scope=all), and the tokens consent gave
// are then refreshed as usual.
func TestConsentFlowViewneoAndVeem(t *testing.T) {
	tests := []struct {
		route    string
		emulator func(emulators.Options) emulators.Emulator
		path     string
	}{
		{"viewneo", func(o emulators.Options) emulators.Emulator { return emulators.NewViewneo(o) }, "/viewneo/api/v1.0/playlist"},
		{"veem", func(o emulators.Options) emulators.Emulator { return emulators.NewVeem(o) }, "/veem/veem/v1.0/hello"},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			clock := fakeclock.New(time.Now())
			side := newConsentSidecar(t)
			o := vendorOptions(clock)
			o.RedirectURL = side.url + "/oauth/" + tt.route + "/callback"
			o.AccessLifetime = time.Hour
			emu := tt.emulator(o)
			emuURL := serve(t, emu)
			prefix := strings.ToUpper(tt.route) + "_"
			side.start(t, map[string]string{
				"ROUTES": tt.route, prefix + "UPSTREAM_URL": emuURL, prefix + "CLIENT_ID": demoClientID,
				prefix + "CLIENT_SECRET": demoClientSecret, prefix + "REDIRECT_URL": o.RedirectURL, prefix + "GRANT": "authorization_code",
			}, clock)
			if status, page := newBrowser(t).get(t, side.url+"/oauth/"+tt.route+"/start"); status != http.StatusOK {
				t.Fatalf("consent: %d %s (refusals %v)", status, page, emu.Stats().Refusals)
			}
			call(t, "GET", side.url+tt.path, nil, nil).echo(t)
			clock.Advance(2 * time.Hour)
			call(t, "GET", side.url+tt.path, nil, nil).echo(t)
			if s := emu.Stats(); s.TokenRequests["authorization_code"] != 1 || s.TokenRequests["refresh_token"] != 1 || len(s.Refusals) != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// Regression: a state obtained while the route was not connected was still
// accepted after the route was connected, so anyone who reached /start
// could swap the route onto their own vendor account later.
func TestConsentStartedUnconnectedCannotReplaceAConnection(t *testing.T) {
	v := setupViadeo(t, nil, false)

	// An attacker starts consent while the route is unconnected and keeps
	// the callback for later.
	attacker := newBrowser(t)
	attacker.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		attacker.last = req.URL
		if req.URL.Path == "/oauth/viadeo/callback" {
			return http.ErrUseLastResponse // hold the callback
		}
		return nil
	}
	resp, err := attacker.Get(v.side.url + "/oauth/viadeo/start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	held := attacker.last
	if held == nil || held.Path != "/oauth/viadeo/callback" {
		t.Fatalf("no callback held: %v", held)
	}

	// The operator connects the route.
	if status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start"); status != http.StatusOK {
		t.Fatalf("operator's consent: %d %s", status, page)
	}
	before := call(t, "GET", v.side.url+"/viadeo/me", nil, nil).echo(t).Query

	// The attacker's callback is refused, and the connection is kept.
	attacker.CheckRedirect = nil
	status, page := attacker.get(t, held.String())
	if status != http.StatusConflict || !strings.Contains(page, "Already connected") {
		t.Fatalf("held callback after the route was connected: %d %s", status, page)
	}
	if after := call(t, "GET", v.side.url+"/viadeo/me", nil, nil).echo(t).Query; after != before {
		t.Fatal("the held consent replaced the route's connection")
	}
}

// Regression: the admin token was taken from the query string, where it
// ends up in history, logs and Referer headers.
func TestAdminTokenIsNotTakenFromTheQuery(t *testing.T) {
	v := setupViadeo(t, map[string]string{"ADMIN_TOKEN": "operator-secret-0123456789"}, false)
	if status, _ := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start?admin_token=operator-secret-0123456789"); status != http.StatusUnauthorized {
		t.Fatalf("admin token in the query: %d, want 401", status)
	}
	req, _ := http.NewRequest("GET", v.side.url+"/oauth/viadeo/start", nil)
	req.Header.Set("X-Authsidecar-Admin-Token", "operator-secret-0123456789")
	if resp, err := newBrowser(t).Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin token in its header: %v %v", resp, err)
	}
}

// Regression: /oauth/ROUTE/start could be flooded (206k states). Pending
// states are bounded per route.
func TestConsentStartsAreBounded(t *testing.T) {
	v := setupViadeo(t, nil, false)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var started, refused int
	for range 150 {
		resp, err := noFollow.Get(v.side.url + "/oauth/viadeo/start")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusFound:
			started++
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("start: %d", resp.StatusCode)
		}
	}
	if started != 100 || refused != 50 {
		t.Fatalf("%d started, %d refused; want 100 and 50", started, refused)
	}
	// They expire, and consent can start again.
	v.clock.Advance(11 * time.Minute)
	if status, page := newBrowser(t).get(t, v.side.url+"/oauth/viadeo/start"); status != http.StatusOK {
		t.Fatalf("consent after the states expired: %d %s", status, page)
	}
}
