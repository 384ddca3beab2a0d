package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/auth"
)

const queryToken = "tok/secret+123"

// queryRoute is a route whose static token travels in the query string to
// upstream, as Viadeo's does.
func queryRoute(t *testing.T, upstream string, refused func(int, []byte) bool) *httptest.Server {
	t.Helper()
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	keeper := newKeeper("vendor", auth.StaticGrant{AccessToken: queryToken}, time.Second, nil, 0)
	h := newHandler(t, []Route{{Name: "vendor", Upstream: up, Tokens: keeperTokens{keeper}, Inject: Injection{QueryParam: "access_token"}, Refused: refused}},
		EngineOptions{MaxReplayBytes: 1 << 20}, Options{})
	side := httptest.NewServer(h)
	t.Cleanup(side.Close)
	return side
}

func containsToken(s string) bool {
	forms, n := secretForms(queryToken)
	for _, f := range forms[:n] {
		if strings.Contains(s, f) {
			return true
		}
	}
	return false
}

// Regression: an upstream redirect repeated the query, token and all, in
// headers the caller reads.
func TestAnswerHeadersNeverCarryTheToken(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		again := "/next?" + r.URL.RawQuery
		w.Header().Set("Location", again)
		w.Header().Set("Content-Location", again)
		w.Header().Set("Refresh", "0; url="+again)
		w.Header().Set("Link", "<"+again+">; rel=next")
		w.Header().Set("X-Debug", "token="+r.URL.Query().Get("access_token"))
		w.WriteHeader(http.StatusFound)
	}))
	defer up.Close()
	side := queryRoute(t, up.URL, nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(side.URL + "/vendor/me?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for name, values := range resp.Header {
		for _, v := range values {
			if containsToken(v) {
				t.Errorf("answer header %s carries the token: %q", name, v)
			}
		}
	}
	if !strings.Contains(resp.Header.Get("Location"), "x=1") {
		t.Errorf("Location lost the caller's parameters: %q", resp.Header.Get("Location"))
	}
}

// Regression: a broken upstream that echoes the request line made net/http
// quote it, token and all, in the sidecar's own 502.
func TestUpstreamErrorsNeverCarryTheToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "%s\r\n\r\n", strings.TrimSpace(line)) // not an HTTP answer
			}()
		}
	}()
	side := queryRoute(t, "http://"+ln.Addr().String(), nil)
	resp, err := http.Get(side.URL + "/vendor/me")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if containsToken(string(body)) {
		t.Fatalf("the 502 carries the token: %s", body)
	}
}

// Regression: parameters an upstream framework reads as access_token
// (PHP turns access.token into access_token) passed beside ours.
func TestCallersLookAlikeParametersAreRemoved(t *testing.T) {
	var got url.Values
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query()
	}))
	defer up.Close()
	side := queryRoute(t, up.URL, nil)
	resp, err := http.Get(side.URL + "/vendor/me?ACCESS_TOKEN=a&access_token%5B%5D=b&access.token=c&Access-Token=d&keep=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(got) != 2 || got.Get("keep") != "1" || len(got["access_token"]) != 1 || got.Get("access_token") != queryToken {
		t.Fatalf("upstream got %v; want keep=1 and only the sidecar's access_token", got)
	}
}

// Regression: "..;" is ".." to servers that strip path parameters.
func TestDotSegmentsWithPathParametersAreRefused(t *testing.T) {
	side := queryRoute(t, "http://127.0.0.1:1", nil)
	for _, p := range []string{"/vendor/a/..;/admin", "/vendor/..;x/admin", "/vendor/a/.;/b", "/vendor/a/%2e%2e;/b"} {
		resp, err := http.Get(side.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", p, resp.StatusCode)
		}
	}
}

// Regression: the refusal check of a preset (Viadeo's 200-with-error) read
// the start of every JSON answer, holding back a stream until its first
// bytes. Only answers of small declared length are peeked at now.
func TestRefusalCheckDoesNotHoldBackAStream(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, `{"data":[]}`)
	}))
	defer up.Close()
	defer close(release)
	side := queryRoute(t, up.URL, func(int, []byte) bool { return false })
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(side.URL + "/vendor/stream")
	if err != nil {
		t.Fatalf("the answer's head was held back: %v", err)
	}
	resp.Body.Close()
}

// Regression: the access log redacted token= and secret= but showed pass=,
// jwt=, bearer= and assertion= values.
func TestAccessLogRedactsCredentialLookingParameters(t *testing.T) {
	got := redactedTarget("/x", "pass=p1&jwt=j1&bearer=b1&client_assertion=a1&code=c1&page=2")
	for _, secret := range []string{"p1", "j1", "b1", "a1", "c1"} {
		if strings.Contains(got, "="+secret) {
			t.Errorf("%q shows %s", got, secret)
		}
	}
	if !strings.Contains(got, "page=2") {
		t.Errorf("%q lost an ordinary parameter", got)
	}
}
