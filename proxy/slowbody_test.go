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

// Regression: in shared mode, callers without a key trickling a large body
// each held a goroutine (and more) for as long as they liked. The key is
// checked before the body is read, and the connection is closed after the
// refusal instead of being drained.
func TestRefusedCallersCannotHoldConnectionsWithTheirBody(t *testing.T) {
	up, _ := url.Parse("http://127.0.0.1:1")
	keeper := newKeeper("vendor", auth.StaticGrant{AccessToken: "t"}, time.Second, nil, 0)
	side := httptest.NewServer(newHandler(t, []Route{{Name: "vendor", Upstream: up, Tokens: keeperTokens{keeper}}},
		EngineOptions{MaxReplayBytes: 1 << 20}, Options{ClientKeys: []ClientKey{{Key: "a-client-key-of-16+"}}}))
	defer side.Close()

	for _, path := range []string{"/vendor/upload", "/nosuch/upload"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(side.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc", path)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: no answer before the body: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401 client_key_required", path, resp.StatusCode)
		}
		// The server closes the connection rather than waiting for the
		// rest of the body.
		start := time.Now()
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("%s: connection kept open after the refusal: %v", path, err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("%s: closing took %s", path, time.Since(start))
		}
	}
}

// An upload that stalls ends after the idle timeout instead of holding the
// call forever; one that makes progress is not cut.
func TestStalledUploadsEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer upstream.Close()
	up, _ := url.Parse(upstream.URL)
	keeper := newKeeper("vendor", auth.StaticGrant{AccessToken: "t"}, time.Second, nil, 0)
	side := httptest.NewServer(newHandler(t, []Route{{Name: "vendor", Upstream: up, Tokens: keeperTokens{keeper}}},
		EngineOptions{MaxReplayBytes: 1 << 20}, Options{BodyIdleTimeout: 200 * time.Millisecond}))
	defer side.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(side.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /vendor/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a stalled upload was never ended: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("stalled upload: status %d, want 400", resp.StatusCode)
	}
}
