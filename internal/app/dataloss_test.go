package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/emulators"
)

// redisServer is a real redis-server without persistence, which the test
// can restart: what a Redis pod without a volume does.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed; .ci/run installs it")
		}
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisServer{t: t, port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.t.TempDir())
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); c.Ping(context.Background()).Err() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server did not start")
		}
	}
}

func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// restart loses every key, as a restart without persistence does.
func (r *redisServer) restart() { r.stop(); r.start() }

func (r *redisServer) flushAll() {
	c := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		r.t.Fatal(err)
	}
}

// Three replicas under load share a rotating refresh token through a real
// redis-server that loses its data twice: restarted without persistence,
// then FLUSHALL. Before each loss one replica sits idle, so the refresh
// token it holds has been rotated away by its siblings. The vendor revokes a
// whole family when a refresh token is presented twice. No refresh token may
// be presented twice, and once the fleet has converged, no call may fail.
func TestFleetSurvivesRedisLosingItsData(t *testing.T) {
	rs := startRedis(t)
	o := emulators.Options{ClientID: demoClientID, ClientSecret: demoClientSecret, AccessLifetime: 2 * time.Second}
	viewneo := emulators.NewViewneo(o)
	env := map[string]string{
		"ROUTES": "viewneo", "VIEWNEO_UPSTREAM_URL": serve(t, viewneo),
		"VIEWNEO_CLIENT_ID": demoClientID, "VIEWNEO_CLIENT_SECRET": demoClientSecret,
		"VIEWNEO_REFRESH_TOKEN": viewneo.IssueRefreshToken(),
		"REDIS_URL":             "redis://" + rs.addr(), "TOKEN_ENCRYPTION_KEY": testKey,
	}
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var replicas []string
	var served sync.WaitGroup
	for range 3 {
		a, err := New(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served.Add(1)
		go func() { defer served.Done(); a.Serve(ctx, ln); a.Close() }()
		replicas = append(replicas, "http://"+ln.Addr().String())
	}
	defer served.Wait()
	defer stop()

	// Load: callers round-robin over the replicas, noting failures and
	// when they happened.
	var lossAt atomic.Int64 // unix nanos of the latest data loss
	var busy atomic.Int32   // how many replicas get calls: the last may idle
	busy.Store(3)
	var failuresAfterConvergence, calls atomic.Int32
	const convergence = 6 * time.Second
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	for i := range 6 {
		load.Add(1)
		go func() {
			defer load.Done()
			for n := i; loadCtx.Err() == nil; n++ {
				start := time.Now()
				a := callNoFatal(replicas[n%int(busy.Load())] + "/viewneo/api/v1.0/playlist")
				calls.Add(1)
				if a != 200 && start.Sub(time.Unix(0, lossAt.Load())) > convergence {
					failuresAfterConvergence.Add(1)
					t.Errorf("call failed %s after the last data loss: %d", start.Sub(time.Unix(0, lossAt.Load())), a)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for _, lose := range []func(){rs.restart, rs.flushAll} {
		lossAt.Store(time.Now().UnixNano()) // the fleet's first token, or the last loss
		time.Sleep(2 * time.Second)
		busy.Store(2) // the third replica idles while its siblings rotate
		time.Sleep(4 * time.Second)
		lossAt.Store(time.Now().UnixNano())
		lose()
		busy.Store(3)
		time.Sleep(7 * time.Second)
	}
	stopLoad()
	load.Wait()

	st := viewneo.Stats()
	for _, why := range st.Refusals {
		if strings.Contains(why, "reused") || strings.Contains(why, "revoked") {
			t.Fatalf("a refresh token was presented twice: %v", st.Refusals)
		}
	}
	if st.TokenRequests["refresh_token"] < 6 {
		t.Fatalf("only %d refreshes in %d calls: the test did not rotate enough", st.TokenRequests["refresh_token"], calls.Load())
	}
	if a := callNoFatal(replicas[0] + "/viewneo/api/v1.0/playlist"); a != 200 {
		t.Fatalf("after the test the route answers %d", a)
	}
	t.Logf("%d calls, %d refreshes, %d failures after convergence", calls.Load(), st.TokenRequests["refresh_token"], failuresAfterConvergence.Load())
}

func callNoFatal(url string) int {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

var httpClient = newHTTPClient()

func newHTTPClient() *http.Client { return &http.Client{Timeout: 15 * time.Second} }
