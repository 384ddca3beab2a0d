package proxy

import (
	"bufio"
	"bytes"
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
	"github.com/authsidecar/authsidecar/internal/logtest"
)

// aborts is an Observer that records aborted calls.
type aborts struct {
	nopObserver
	mu      sync.Mutex
	reasons []string
}

func (a *aborts) Aborted(_, reason string) {
	a.mu.Lock()
	a.reasons = append(a.reasons, reason)
	a.mu.Unlock()
}

func (a *aborts) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.reasons...)
}

func sidecarTo(t *testing.T, upstream string, o Options) (*httptest.Server, *logtest.Buffer) {
	t.Helper()
	up, _ := url.Parse(upstream)
	log, logs := logtest.New()
	o.Logger = log
	keeper := newKeeper("vendor", auth.StaticGrant{AccessToken: "t"}, time.Second, nil, 0)
	side := httptest.NewServer(newHandler(t, []Route{{Name: "vendor", Upstream: up, Tokens: keeperTokens{keeper}}}, EngineOptions{MaxReplayBytes: 1 << 20, Logger: log}, o))
	t.Cleanup(side.Close)
	return side, logs
}

// Regression: an answer that broke off mid-stream (the upstream died) left
// no log line and no count.
func TestAnswersBrokenMidStreamAreLoggedAndCounted(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "the first bytes")
		w.(http.Flusher).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close() // the upstream dies mid-answer
	}))
	defer up.Close()
	obs := &aborts{}
	side, logs := sidecarTo(t, up.URL, Options{Observer: obs})
	resp, err := http.Get(side.URL + "/vendor/download")
	if err == nil {
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	logs.WaitFor(t, `"aborted":"upstream_failed"`)
	if got := obs.got(); len(got) != 1 || got[0] != "upstream_failed" {
		t.Fatalf("aborts counted: %v", got)
	}
}

// Regression: an upgraded (101) call was logged as 200.
func TestUpgradesAreLoggedAs101(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusBadRequest)
			return
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(buf, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		buf.Flush()
		line, _ := buf.ReadString('\n') // echo one line, then hang up
		io.WriteString(conn, line)
	}))
	defer up.Close()
	side, logs := sidecarTo(t, up.URL, Options{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(side.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET /vendor/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "ping\n")
	if line, _ := br.ReadString('\n'); line != "ping\n" {
		t.Fatalf("echo through the upgrade: %q", line)
	}
	conn.Close()
	logs.WaitFor(t, `"status":101`)
}

// Regression: request trailers did not reach the upstream.
func TestRequestTrailersReachTheUpstream(t *testing.T) {
	got := make(chan string, 2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Get("X-Checksum")
	}))
	defer up.Close()
	side, _ := sidecarTo(t, up.URL, Options{})
	for _, size := range []int{10, 2 << 20} { // kept for a replay, and streamed
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("PUT", side.URL+"/vendor/upload", pr)
		req.Trailer = http.Header{"X-Checksum": nil}
		go func() {
			pw.Write(bytes.Repeat([]byte("x"), size))
			req.Trailer.Set("X-Checksum", "abc123")
			pw.Close()
		}()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if v := <-got; v != "abc123" {
			t.Errorf("%d-byte body: upstream saw trailer %q, want abc123", size, v)
		}
	}
}
