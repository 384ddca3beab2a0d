package app

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer counts the connections (for TLS: the handshakes, and how
// many resumed a session) made to it.
type countingServer struct {
	*httptest.Server
	conns, resumed atomic.Int64
}

func newCountingServer(t *testing.T, tlsOn bool, delay time.Duration) *countingServer {
	c := &countingServer{}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		io.WriteString(w, "ok")
	}))
	c.Config.ConnState = func(conn net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			c.conns.Add(1)
		case http.StateActive:
			if tc, ok := conn.(*tls.Conn); ok && tc.ConnectionState().DidResume {
				c.resumed.Add(1)
			}
		}
	}
	if tlsOn {
		c.StartTLS()
	} else {
		c.Start()
	}
	t.Cleanup(c.Close)
	return c
}

func wave(t *testing.T, url string, callers int) {
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(url)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
}

// The route's upstream pool keeps as many idle connections as the callers
// it serves at once (NAME_UPSTREAM_MAX_IDLE_CONNS, 256 by default), so
// waves of concurrent calls reuse connections instead of opening new ones;
// a pool set too small shows why it matters.
func TestUpstreamPoolIsSizedToTheCallers(t *testing.T) {
	for _, tc := range []struct {
		idle    string
		maxConn int64 // after three waves of 100
		minConn int64
	}{{"", 110, 0}, {"4", 1000, 150}} {
		up := newCountingServer(t, false, 20*time.Millisecond)
		env := map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": up.URL, "API_ACCESS_TOKEN": "t"}
		if tc.idle != "" {
			env["API_UPSTREAM_MAX_IDLE_CONNS"] = tc.idle
		}
		_, side := sidecar(t, env, nil)
		for range 3 {
			wave(t, side+"/api/x", 100)
		}
		if n := up.conns.Load(); n > tc.maxConn || n < tc.minConn {
			t.Errorf("idle pool %q: %d upstream connections for three waves of 100 callers", tc.idle, n)
		}
	}
}

// New connections to an HTTPS vendor resume the TLS session instead of a
// full handshake.
func TestUpstreamTLSSessionsAreResumed(t *testing.T) {
	up := newCountingServer(t, true, 0)
	up.Config.SetKeepAlivesEnabled(false) // a new connection per call
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeCertPEM(t, ca, up.Certificate().Raw)
	_, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": up.URL, "API_ACCESS_TOKEN": "t",
		"API_TLS_CA_FILE": ca}, nil)
	for range 5 {
		call(t, "GET", side+"/api/x", nil, nil)
	}
	if conns, resumed := up.conns.Load(), up.resumed.Load(); conns != 5 || resumed != 4 {
		t.Fatalf("%d connections, %d resumed; want 5, 4", conns, resumed)
	}
}

func writeCertPEM(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
