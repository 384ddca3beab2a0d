package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/config"
)

// upgradeEcho answers an upgrade and echoes lines until its caller hangs up.
var upgradeEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprint(buf, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	buf.Flush()
	for {
		line, err := buf.ReadString('\n')
		if err != nil {
			return
		}
		io.WriteString(conn, line)
	}
})

// servingSidecar runs Serve on loopback; stop starts draining.
func servingSidecar(t *testing.T, shutdownTimeout string) (addr string, stop func(), served chan error) {
	t.Helper()
	cfg, err := config.LoadFrom(map[string]string{"ROUTES": "ws", "WS_UPSTREAM_URL": serve(t, upgradeEcho),
		"WS_ACCESS_TOKEN": "t", "SHUTDOWN_TIMEOUT": shutdownTimeout})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served = make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); a.Close() })
	return ln.Addr().String(), cancel, served
}

func upgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET /ws/socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return conn, br
}

// Regression: at SIGTERM, upgraded (WebSocket) connections were cut at
// once: the server does not track them. They get SHUTDOWN_TIMEOUT to end.
func TestDrainingWaitsForUpgradedConnections(t *testing.T) {
	addr, stop, served := servingSidecar(t, "5s")
	conn, br := upgrade(t, addr)
	defer conn.Close()
	start := time.Now()
	stop()
	drained := make(chan time.Duration, 1)
	go func() {
		if err := <-served; err != nil {
			t.Errorf("draining: %v", err)
		}
		drained <- time.Since(start)
	}()
	time.Sleep(300 * time.Millisecond) // the session goes on while draining
	fmt.Fprint(conn, "last words\n")
	if line, err := br.ReadString('\n'); err != nil || line != "last words\n" {
		t.Fatalf("the upgraded connection was cut while draining: %q %v", line, err)
	}
	conn.Close()
	if took := <-drained; took < 250*time.Millisecond {
		t.Fatalf("drained in %s, before the upgraded connection ended", took)
	}
}

// An upgraded connection that outlives SHUTDOWN_TIMEOUT is closed then.
func TestDrainingClosesUpgradedConnectionsAtTheTimeout(t *testing.T) {
	addr, stop, served := servingSidecar(t, "500ms")
	conn, br := upgrade(t, addr)
	defer conn.Close()
	stop()
	err := <-served
	if err == nil || !strings.Contains(err.Error(), "SHUTDOWN_TIMEOUT") {
		t.Fatalf("draining: %v, want the timeout", err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadString('\n'); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the upgraded connection outlived draining: %v", err)
	}
}
