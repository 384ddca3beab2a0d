package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/internal/issuer"
	"github.com/authsidecar/authsidecar/internal/logtest"
	"github.com/authsidecar/authsidecar/internal/oauthtest"
)

const (
	clientID     = "client-id-123"
	clientSecret = "client-secret-s3cr3t"
)

type fixture struct {
	vendor  *oauthtest.Server
	keeper  *auth.Keeper
	sidecar *httptest.Server
	logs    *logtest.Buffer
}

type fixtureOptions struct {
	vendor       oauthtest.Config
	upstreamPath string // base path of the route's upstream
	maxReplay    int64
	tokenTimeout time.Duration
	queryParam   string
	grant        func(vendor *oauthtest.Server) auth.Grant // default: client credentials against the fake
	upstream     string                                    // default: the fake
	// forcedRefreshInterval bounds refreshes forced by 401s; zero: the
	// keeper's default.
	forcedRefreshInterval time.Duration
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	if o.vendor.ClientID == "" {
		o.vendor.ClientID, o.vendor.ClientSecret, o.vendor.BasicAuth = clientID, clientSecret, true
	}
	if o.vendor.Grants == nil {
		o.vendor.Grants = []string{"client_credentials"}
	}
	if o.maxReplay == 0 {
		o.maxReplay = 1 << 20
	}
	if o.tokenTimeout == 0 {
		o.tokenTimeout = 5 * time.Second
	}
	f := &fixture{}
	f.vendor = oauthtest.New(t, o.vendor)
	log, logs := logtest.New()
	f.logs = logs
	var grant auth.Grant = &auth.OAuth2Grant{Type: auth.GrantClientCredentials, TokenURL: f.vendor.TokenURL(),
		Endpoint: &auth.Endpoint{Auth: auth.ClientSecretBasic{ID: clientID, Secret: clientSecret}, Client: http.DefaultClient}}
	if o.grant != nil {
		grant = o.grant(f.vendor)
	}
	f.keeper = newKeeperWith("vendor", grant, auth.KeeperConfig{Timeout: o.tokenTimeout, Logger: log,
		MinBackoff: 50 * time.Millisecond, ForcedRefreshInterval: o.forcedRefreshInterval})
	if o.upstream == "" {
		o.upstream = f.vendor.URL
	}
	up, err := url.Parse(o.upstream + o.upstreamPath)
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, []Route{{Name: "vendor", Upstream: up, Tokens: keeperTokens{f.keeper}, Inject: Injection{QueryParam: o.queryParam}}},
		EngineOptions{MaxReplayBytes: o.maxReplay, Logger: log}, Options{Logger: log})
	f.sidecar = httptest.NewServer(h)
	t.Cleanup(f.sidecar.Close)
	return f
}

func static(token string) func(*oauthtest.Server) auth.Grant {
	return func(*oauthtest.Server) auth.Grant { return auth.StaticGrant{AccessToken: token} }
}

func (f *fixture) do(t *testing.T, method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.sidecar.URL+path, body)
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
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func decodeEcho(t *testing.T, resp *http.Response, body []byte) issuer.Echo {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var e issuer.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decoding echo: %v: %s", err, body)
	}
	return e
}

func decodeError(t *testing.T, resp *http.Response, body []byte) errorBody {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q, want application/json: %s", ct, body)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decoding error body: %v: %s", err, body)
	}
	return e
}

func randomBody(t *testing.T, n int) ([]byte, string) {
	b := make([]byte, n)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func TestProxyInjectsTokenAndForwardsCleanly(t *testing.T) {
	f := newFixture(t, fixtureOptions{upstreamPath: "/base"})
	resp, body := f.do(t, "GET", "/vendor/v1/items?page=2&q=a%20b", nil, http.Header{
		"Authorization":       {"Bearer caller-own-token"},
		"Connection":          {"X-Hop-Secret"},
		"X-Hop-Secret":        {"hop"},
		"X-Forwarded-For":     {"10.1.2.3"},
		"Proxy-Authorization": {"Basic eDp5"},
		"X-Request-Id":        {"3f1c0a6e-0d5b-4a57-9a44-1ad2d8f0e7b1"},
	})
	e := decodeEcho(t, resp, body)
	if e.Path != "/base/v1/items" || e.Query != "page=2&q=a%20b" {
		t.Errorf("upstream got path %q query %q", e.Path, e.Query)
	}
	tok, _ := f.keeper.Token(t.Context())
	if got := e.Header.Get("Authorization"); got != "Bearer "+tok.AccessToken {
		t.Errorf("Authorization = %q, want the sidecar's token", got)
	}
	for _, h := range []string{"X-Hop-Secret", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Proxy-Authorization"} {
		if v := e.Header.Get(h); v != "" {
			t.Errorf("%s forwarded: %q", h, v)
		}
	}
	if e.Header.Get("X-Request-Id") != "3f1c0a6e-0d5b-4a57-9a44-1ad2d8f0e7b1" {
		t.Error("X-Request-Id not forwarded unchanged")
	}
	if want := strings.TrimPrefix(f.vendor.URL, "http://"); e.Host != want {
		t.Errorf("Host = %q, want the upstream's %q", e.Host, want)
	}
}

func TestProxyQueryInjectionReplacesCallersParameter(t *testing.T) {
	f := newFixture(t, fixtureOptions{vendor: oauthtest.Config{QueryToken: true}, queryParam: "access_token"})
	resp, body := f.do(t, "POST", "/vendor/me?access_token=callers&fields=a,b&access_token=again", strings.NewReader("x=1"),
		http.Header{"Authorization": {"Bearer callers"}, "Content-Type": {"application/x-www-form-urlencoded"}})
	e := decodeEcho(t, resp, body)
	tok, _ := f.keeper.Token(t.Context())
	q, _ := url.ParseQuery(e.Query)
	if got := q["access_token"]; len(got) != 1 || got[0] != tok.AccessToken {
		t.Errorf("access_token = %q, want exactly the sidecar's", got)
	}
	if q.Get("fields") != "a,b" {
		t.Errorf("caller's parameters lost: %q", e.Query)
	}
	if e.Header.Get("Authorization") != "" {
		t.Error("caller's Authorization header forwarded in query mode")
	}
}

func TestProxyReplaysOnceAfter401(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.do(t, "GET", "/vendor/warm", nil, nil)
	f.vendor.ExpireAll() // the vendor no longer takes the token the sidecar holds

	payload, sum := randomBody(t, 300<<10)
	resp, body := f.do(t, "PUT", "/vendor/upload", bytes.NewReader(payload), http.Header{"X-Request-Id": {"req-1"}, "Content-Type": {"application/octet-stream"}})
	e := decodeEcho(t, resp, body)
	if e.BodyLen != int64(len(payload)) || e.BodySHA256 != sum {
		t.Fatalf("replayed body: %d bytes, sha %s; want %d bytes, sha %s", e.BodyLen, e.BodySHA256, len(payload), sum)
	}
	if e.Header.Get("X-Request-Id") != "req-1" || e.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("replay lost headers: %v", e.Header)
	}
	total, unauth := f.vendor.APICalls()
	if total != 3 || unauth != 1 {
		t.Fatalf("API calls %d (401s %d), want 3 (1): warm-up, refused, replay", total, unauth)
	}
	if n := f.vendor.TokenCalls("client_credentials"); n != 2 {
		t.Fatalf("%d token calls, want 2", n)
	}
	// The line is written when the handler returns, which may be just
	// after the caller has the whole answer.
	f.logs.WaitFor(t, `"replayed":true`)
}

func TestProxyDoesNotReplayBodiesOverTheLimit(t *testing.T) {
	f := newFixture(t, fixtureOptions{maxReplay: 1 << 20})
	f.do(t, "GET", "/vendor/warm", nil, nil)
	f.vendor.ExpireAll()

	payload, _ := randomBody(t, 2<<20)
	// An unknown length (a pipe), so the limit is found by reading.
	pr, pw := io.Pipe()
	go func() { pw.Write(payload); pw.Close() }()
	resp, body := f.do(t, "POST", "/vendor/big", pr, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want the upstream's 401 passed through: %s", resp.StatusCode, body)
	}
	if total, _ := f.vendor.APICalls(); total != 2 {
		t.Fatalf("API calls %d, want 2: a body over the limit is not replayed", total)
	}
	// The 401 invalidated the token: the next call gets a fresh one.
	small, sum := randomBody(t, 1000)
	resp, body = f.do(t, "POST", "/vendor/next", bytes.NewReader(small), nil)
	if e := decodeEcho(t, resp, body); e.BodySHA256 != sum {
		t.Fatal("next call's body mangled")
	}
	if total, unauth := f.vendor.APICalls(); total != 3 || unauth != 1 {
		t.Fatalf("API calls %d (401s %d), want 3 (1)", total, unauth)
	}
}

func TestProxyStreamsLargeBodiesIntact(t *testing.T) {
	f := newFixture(t, fixtureOptions{maxReplay: 64 << 10})
	payload, sum := randomBody(t, 3<<20)
	resp, body := f.do(t, "POST", "/vendor/big", bytes.NewReader(payload), nil)
	if e := decodeEcho(t, resp, body); e.BodyLen != int64(len(payload)) || e.BodySHA256 != sum {
		t.Fatalf("streamed body arrived as %d bytes sha %s", e.BodyLen, e.BodySHA256)
	}
}

// An upstream that refuses every token is called exactly twice per call:
// the attempt and one replay. Never a loop.
func TestProxyRepliesOnlyOnceToAnAlways401Upstream(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.vendor.SetAPI401(true)
	resp, body := f.do(t, "POST", "/vendor/x", strings.NewReader(`{"a":1}`), nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "Unauthenticated") {
		t.Fatalf("status %d body %s, want the replay's 401", resp.StatusCode, body)
	}
	if total, _ := f.vendor.APICalls(); total != 2 {
		t.Fatalf("API called %d times, want exactly 2", total)
	}
}

func TestProxyStaticTokenIsNotReplayedWith401(t *testing.T) {
	f := newFixture(t, fixtureOptions{grant: static("pat-unknown-to-vendor")})
	resp, _ := f.do(t, "GET", "/vendor/x", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	if total, _ := f.vendor.APICalls(); total != 1 {
		t.Fatalf("API called %d times; replaying the same static token is pointless", total)
	}
}

func TestProxyTokenFailuresAnswerJSON(t *testing.T) {
	tests := []struct {
		name       string
		mode       oauthtest.Mode
		badSecret  bool
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"endpoint down", oauthtest.Down, false, 503, "token_unavailable", "HTML"},
		{"endpoint answers HTML", oauthtest.HTML, false, 503, "token_unavailable", "HTML"},
		{"endpoint slow", oauthtest.Slow, false, 503, "token_unavailable", "deadline exceeded"},
		{"credentials rejected", oauthtest.Normal, true, 502, "token_rejected", "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := fixtureOptions{tokenTimeout: 300 * time.Millisecond}
			f := newFixture(t, o)
			if tt.badSecret {
				f = newFixture(t, fixtureOptions{tokenTimeout: o.tokenTimeout, vendor: oauthtest.Config{
					ClientID: clientID, ClientSecret: "the-right-one", BasicAuth: true}})
			}
			f.vendor.SetMode(tt.mode)
			start := time.Now()
			resp, body := f.do(t, "GET", "/vendor/x", nil, nil)
			elapsed := time.Since(start)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			e := decodeError(t, resp, body)
			if e.Error != tt.wantCode || e.Route != "vendor" || !strings.Contains(e.Message, tt.wantInMsg) {
				t.Errorf("error body %+v, want code %s, route vendor, message with %q", e, tt.wantCode, tt.wantInMsg)
			}
			if tt.wantStatus == 503 {
				if ra := resp.Header.Get("Retry-After"); ra == "" || e.RetryAfterSeconds < 1 {
					t.Errorf("503 without Retry-After (%q, %d)", ra, e.RetryAfterSeconds)
				}
			}
			// Within the token timeout, not the upstream's or the client's.
			if elapsed > 300*time.Millisecond+2*time.Second {
				t.Errorf("answered after %s", elapsed)
			}
			if strings.Contains(string(body), clientSecret) || strings.Contains(string(body), "the-right-one") {
				t.Errorf("error body reveals a secret: %s", body)
			}
			if total, _ := f.vendor.APICalls(); total != 0 {
				t.Error("called the API without a token")
			}
		})
	}
}

func TestProxyUnknownRouteAndOwnEndpoints(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	resp, body := f.do(t, "GET", "/nope/x", nil, nil)
	e := decodeError(t, resp, body)
	if resp.StatusCode != 404 || e.Error != "unknown_route" || len(e.Routes) != 1 || e.Routes[0] != "vendor" {
		t.Fatalf("unknown route: %d %+v", resp.StatusCode, e)
	}
	for _, p := range []string{"/", "/healthz/x"} {
		if resp, _ := f.do(t, "GET", p, nil, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := f.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("/readyz: %d", resp.StatusCode)
	}
	f.sidecar.Config.Handler.(*Handler).SetReady(false)
	if resp, _ := f.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != 503 {
		t.Errorf("/readyz while draining: %d, want 503", resp.StatusCode)
	}
}

// rawRequest sends a request line as written, bypassing the client's own
// path cleaning.
func rawRequest(t *testing.T, addr, requestLine string) (int, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s\r\nHost: sidecar\r\nConnection: close\r\n\r\n", requestLine)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestProxyPathsCannotEscapeTheUpstream(t *testing.T) {
	f := newFixture(t, fixtureOptions{upstreamPath: "/api"})
	addr := strings.TrimPrefix(f.sidecar.URL, "http://")
	host := strings.TrimPrefix(f.vendor.URL, "http://")
	tests := []struct{ line, wantPath string }{
		{"GET /vendor/../../admin HTTP/1.1", "/api/admin"},
		{"GET /vendor/%2e%2e/%2e%2e/admin HTTP/1.1", "/api/admin"},
		{"GET /vendor//evil.example/x HTTP/1.1", "/api/evil.example/x"},
		{"GET /vendor/http://evil.example/x HTTP/1.1", "/api/http:/evil.example/x"},
		{"GET http://evil.example/vendor/x HTTP/1.1", "/api/x"},
		{"GET /vendor/a%2Fb HTTP/1.1", "/api/a/b"}, // decoded by the echo; raw below
	}
	for _, tt := range tests {
		status, body := rawRequest(t, addr, tt.line)
		if status != 200 {
			t.Errorf("%s: status %d: %s", tt.line, status, body)
			continue
		}
		var e issuer.Echo
		json.Unmarshal(body, &e)
		if e.Host != host || e.Path != tt.wantPath {
			t.Errorf("%s: reached host %q path %q, want %q %q", tt.line, e.Host, e.Path, host, tt.wantPath)
		}
		if strings.Contains(tt.line, "%2F") && e.RawPath != "/api/a%2Fb" {
			t.Errorf("%s: encoded slash not kept: raw path %q", tt.line, e.RawPath)
		}
	}
	for _, line := range []string{"GET /vendor/..%2f..%2fadmin HTTP/1.1", "GET /vendor/%zz HTTP/1.1"} {
		if status, _ := rawRequest(t, addr, line); status != 400 {
			t.Errorf("%s: status %d, want 400", line, status)
		}
	}
	if total, _ := f.vendor.APICalls(); total != len(tests) {
		t.Errorf("API calls %d, want %d", total, len(tests))
	}
}

func TestProxyStreamsAnswersAndCancelsWithTheCaller(t *testing.T) {
	firstEventRead := make(chan struct{})
	upstreamDone := make(chan error, 1)
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-firstEventRead:
		case <-time.After(10 * time.Second):
			upstreamDone <- fmt.Errorf("first event never reached the caller")
			return
		}
		// Keep streaming until the caller goes away.
		<-r.Context().Done()
		upstreamDone <- nil
	}))
	defer sse.Close()
	f := newFixture(t, fixtureOptions{grant: static("t"), upstream: sse.URL})

	req, _ := http.NewRequestWithContext(t.Context(), "GET", f.sidecar.URL+"/vendor/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	close(firstEventRead)
	resp.Body.Close() // the caller goes away
	select {
	case err := <-upstreamDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream call was not canceled when the caller left")
	}
}

// The logs of a run through every path — success, replay, refresh, a
// rejected refresh, query injection, a caller's own token — contain none of
// the secrets in play.
func TestLogsNeverContainSecrets(t *testing.T) {
	const password = "pa55word-xyz"
	f := newFixture(t, fixtureOptions{
		vendor: oauthtest.Config{ClientID: clientID, ClientSecret: clientSecret, BasicAuth: true,
			Grants: []string{"password", "refresh_token"}, Username: "ann", Password: password, Rotate: true, QueryToken: true},
		queryParam: "access_token",
		// Every 401 may force a refresh here, so the run reaches a
		// failing one.
		forcedRefreshInterval: time.Nanosecond,
		grant: func(v *oauthtest.Server) auth.Grant {
			return &auth.OAuth2Grant{Type: auth.GrantPassword, Username: "ann", Password: password, TokenURL: v.TokenURL(),
				Endpoint: &auth.Endpoint{Auth: auth.ClientSecretBasic{ID: clientID, Secret: clientSecret}, Client: http.DefaultClient}}
		},
	})
	f.do(t, "GET", "/vendor/a?access_token=callers-own-token&x=1", nil, nil)
	f.vendor.ExpireAll()
	f.do(t, "POST", "/vendor/b?code=callers-code", strings.NewReader("body"), nil) // 401, refresh, replay
	f.vendor.SetAPI401(true)
	f.do(t, "GET", "/vendor/c", nil, nil)
	f.vendor.SetMode(oauthtest.Down)
	f.do(t, "GET", "/vendor/d", nil, nil)

	f.logs.WaitFor(t, `"path":"/d"`) // the last call's line
	logs := f.logs.String()
	if !strings.Contains(logs, `"msg":"proxied"`) || !strings.Contains(logs, "token refresh failed") {
		t.Fatalf("the scenario did not log what it should have:\n%s", logs)
	}
	secrets := append(f.vendor.IssuedSecrets(), clientSecret, password, "callers-own-token", "callers-code")
	if len(secrets) < 7 {
		t.Fatalf("only %d secrets issued; the scenario did not run", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the logs: %.6s…", s)
		}
	}
}

// Fifty callers whose token the vendor dropped all get 401 at about the same
// time. Compare-and-invalidate makes that one refresh, and every caller
// succeeds on its replay.
func TestProxyFiftyCallersOnAnExpiredTokenCauseOneRefresh(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.do(t, "GET", "/vendor/warm", nil, nil)
	f.vendor.ExpireAll()

	var wg sync.WaitGroup
	statuses := make(chan int, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(f.sidecar.URL+"/vendor/item", "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("a caller got %d", s)
		}
	}
	if n := f.vendor.TokenCalls("client_credentials"); n != 2 {
		t.Fatalf("%d token calls, want 2: the first token and one refresh", n)
	}
}

// With ForwardedHeaders the upstream learns the caller's address; without,
// it learns nothing of the internal network (the default).
func TestProxyForwardedHeadersOnlyWhenConfigured(t *testing.T) {
	for _, on := range []bool{false, true} {
		f := newFixture(t, fixtureOptions{})
		up, _ := url.Parse(f.vendor.URL)
		h := newHandler(t, []Route{{Name: "vendor", Upstream: up, Tokens: keeperTokens{f.keeper}}}, EngineOptions{ForwardedHeaders: on}, Options{})
		side := httptest.NewServer(h)
		resp, err := http.Get(side.URL + "/vendor/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		side.Close()
		e := decodeEcho(t, resp, body)
		if got := e.Header.Get("X-Forwarded-For"); (got != "") != on {
			t.Errorf("ForwardedHeaders=%v: X-Forwarded-For %q", on, got)
		}
	}
}
