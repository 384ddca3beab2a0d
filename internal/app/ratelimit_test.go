package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/authsidecar/authsidecar/internal/config"
	"go.uber.org/zap"
)

// pacedVendor records when each call arrived and answers as told.
type pacedVendor struct {
	mu       sync.Mutex
	arrivals []time.Time
	answered []int
	// answer decides the n-th call's status and headers (n from 0).
	answer func(n int, w http.ResponseWriter) int
}

func (v *pacedVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	n := len(v.arrivals)
	v.arrivals = append(v.arrivals, time.Now())
	status := http.StatusOK
	if v.answer != nil {
		status = v.answer(n, w)
	}
	v.answered = append(v.answered, status)
	v.mu.Unlock()
	w.WriteHeader(status)
	io.WriteString(w, "ok")
}

func (v *pacedVendor) between(from, to time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, t := range v.arrivals {
		if t.After(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// fleet starts three replicas on one real redis-server, each listening
// for the fleet's cool-downs as a serving sidecar does.
func fleet(t *testing.T, env map[string]string) []string {
	t.Helper()
	rs := startRedis(t)
	env["REDIS_URL"], env["TOKEN_ENCRYPTION_KEY"] = "redis://"+rs.addr(), testKey
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	var urls []string
	for range 3 {
		a, err := New(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		go a.listenToFleet(ctx)
		urls = append(urls, serve(t, a.Handler()))
	}
	time.Sleep(100 * time.Millisecond) // the subscriptions are made
	return urls
}

// hammer calls the replicas from a few goroutines each until stop, and
// counts what each replica answered by status and by whose 429 it was.
type tally struct {
	mu                 sync.Mutex
	ok, ours, theirs   [3]int
	ourRetryAfterFirst string
}

func hammer(t *testing.T, urls []string, perReplica int, until time.Time, pause time.Duration) *tally {
	t.Helper()
	var tl tally
	var wg sync.WaitGroup
	for i, url := range urls {
		for range perReplica {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(until) {
					resp, err := http.Get(url + "/api/x")
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					tl.mu.Lock()
					switch {
					case resp.StatusCode == 200:
						tl.ok[i]++
					case resp.StatusCode == 429 && resp.Header.Get("X-Authsidecar-Rate-Limited") == "true":
						tl.ours[i]++
						if tl.ourRetryAfterFirst == "" {
							tl.ourRetryAfterFirst = resp.Header.Get("Retry-After")
						}
					case resp.StatusCode == 429:
						tl.theirs[i]++
					}
					tl.mu.Unlock()
					time.Sleep(pause)
				}
			}()
		}
	}
	wg.Wait()
	return &tl
}

// The vendor answers one call 429 with Retry-After — in seconds, then as an
// HTTP date — while three replicas on a real redis-server call it: from
// that answer until the pause ends, no replica sends it anything (calls
// already on the wire excepted: 50 ms), each replica answers its callers
// 429 itself, marked as its own, and calls resume after.
func TestCooldownHoldsTheFleetBack(t *testing.T) {
	for _, form := range []string{"seconds", "date"} {
		t.Run(form, func(t *testing.T) {
			var sent429 atomic.Int64
			v := &pacedVendor{}
			v.answer = func(n int, w http.ResponseWriter) int {
				if n != 40 {
					return 200
				}
				if form == "seconds" {
					w.Header().Set("Retry-After", "2")
				} else {
					w.Header().Set("Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))
				}
				sent429.Store(time.Now().UnixNano())
				return http.StatusTooManyRequests
			}
			urls := fleet(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": serve(t, v), "API_ACCESS_TOKEN": "tok"})
			tl := hammer(t, urls, 4, time.Now().Add(4*time.Second), 2*time.Millisecond)

			at := time.Unix(0, sent429.Load())
			pause := 2 * time.Second // the date form asks for 2-3 s: its resolution is a second
			if sent429.Load() == 0 {
				t.Fatal("the vendor never answered 429")
			}
			if n := v.between(at.Add(50*time.Millisecond), at.Add(pause-50*time.Millisecond)); n != 0 {
				t.Errorf("%d calls reached the vendor during the pause it asked for", n)
			}
			if v.between(at.Add(pause+100*time.Millisecond), time.Now()) == 0 {
				t.Error("no call reached the vendor after the pause")
			}
			for i := range urls {
				if tl.ours[i] == 0 {
					t.Errorf("replica %d never held a call back (answered %d ok, %d vendor 429)", i, tl.ok[i], tl.theirs[i])
				}
			}
			if s, err := strconv.Atoi(tl.ourRetryAfterFirst); err != nil || s < 1 || s > 3 {
				t.Errorf("the sidecar's Retry-After was %q", tl.ourRetryAfterFirst)
			}
			metrics := string(call(t, "GET", urls[2]+"/metrics", nil, nil).body)
			if !strings.Contains(metrics, `authsidecar_rate_limited_requests_total{action="refused",reason="cooldown",route="api"}`) {
				t.Error("held-back calls were not counted")
			}
		})
	}
}

// With RATE_LIMIT_MAX_WAIT, a call that meets a pause waits it out and
// gets the vendor's answer; a pause longer than the wait is refused at
// once; a vendor's absurd Retry-After is capped by
// RATE_LIMIT_MAX_COOLDOWN.
func TestCooldownWaitModeAndCap(t *testing.T) {
	v := &pacedVendor{}
	retryAfter := "1"
	v.answer = func(n int, w http.ResponseWriter) int {
		if n == 0 {
			w.Header().Set("Retry-After", retryAfter)
			return http.StatusTooManyRequests
		}
		return 200
	}
	_, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": serve(t, v), "API_ACCESS_TOKEN": "tok",
		"API_RATE_LIMIT_MAX_WAIT": "3s", "API_RATE_LIMIT_MAX_COOLDOWN": "2s"}, nil)
	if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 429 || got.header.Get("X-Authsidecar-Rate-Limited") != "" {
		t.Fatalf("the vendor's own 429 reached the caller as: %d %v", got.status, got.header)
	}
	start := time.Now()
	if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("a call in the pause: %d %s", got.status, got.body)
	}
	if took := time.Since(start); took < 800*time.Millisecond {
		t.Fatalf("the call did not wait out the pause: %s", took)
	}

	// Capped: a day becomes 2 s, which is within the wait.
	v.mu.Lock()
	v.arrivals, retryAfter = nil, "86400"
	v.mu.Unlock()
	call(t, "GET", side+"/api/x", nil, nil)
	start = time.Now()
	if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 || time.Since(start) > 2500*time.Millisecond {
		t.Fatalf("a capped pause: %d after %s", got.status, time.Since(start))
	}
}

// Fail-fast (the default): a call in a pause is answered 429 by the
// sidecar at once, with Retry-After; the vendor's X-RateLimit-Remaining: 0
// with a reset is a pause too.
func TestCooldownFailFastAndRateLimitHeaders(t *testing.T) {
	v := &pacedVendor{}
	v.answer = func(n int, w http.ResponseWriter) int {
		if n == 0 {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", fmt.Sprint(time.Now().Add(2*time.Second).Unix()))
		}
		return 200
	}
	_, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": serve(t, v), "API_ACCESS_TOKEN": "tok"}, nil)
	if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("first call: %d", got.status)
	}
	start := time.Now()
	got := call(t, "GET", side+"/api/x", nil, nil)
	if got.status != 429 || got.header.Get("X-Authsidecar-Rate-Limited") != "true" || got.header.Get("Retry-After") == "" ||
		!strings.Contains(string(got.body), `"error":"rate_limited"`) || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("a call in the pause: %d %v %s after %s", got.status, got.header, got.body, time.Since(start))
	}
	if n := v.between(start.Add(-time.Hour), time.Now()); n != 1 {
		t.Fatalf("%d calls reached the vendor; the pause should have held the second back", n)
	}
}

// RATE_LIMIT holds a fleet of three, called as fast as it answers, to the
// rate across the fleet: 20/s for 10 s is 200 calls, within a few percent.
func TestRateLimitHoldsTheFleetToTheRate(t *testing.T) {
	if testing.Short() {
		t.Skip("ten seconds of load")
	}
	v := &pacedVendor{}
	urls := fleet(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": serve(t, v), "API_ACCESS_TOKEN": "tok",
		"API_RATE_LIMIT": "20/s", "API_RATE_LIMIT_MAX_WAIT": "5s"})
	start := time.Now()
	hammer(t, urls, 5, start.Add(10*time.Second), 0)
	got := v.between(start, start.Add(10*time.Second))
	if got < 190 || got > 210 {
		t.Fatalf("the fleet sent %d calls in 10 s at 20/s; want 200 ± 5%%", got)
	}
	t.Logf("the fleet sent %d calls in 10 s at 20/s", got)
}

// A Redis that stops answering must not slow every call by the store's
// timeout: the limiter lets calls through (it cannot count) and asks the
// store again only after a pause.
func TestRateLimiterDoesNotWaitOnASlowStore(t *testing.T) {
	mr := miniredis.RunT(t)
	v := &pacedVendor{}
	_, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": serve(t, v), "API_ACCESS_TOKEN": "tok",
		"API_RATE_LIMIT": "1000/s", "API_RATE_LIMIT_MAX_WAIT": "1s", "STORE_TIMEOUT": "300ms",
		"REDIS_URL": "redis://" + slowProxy(t, mr.Addr(), 1500*time.Millisecond), "TOKEN_ENCRYPTION_KEY": testKey}, nil)
	slow := 0
	for range 20 {
		start := time.Now()
		if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 {
			t.Fatalf("a call with Redis slow: %d %s", got.status, got.body)
		}
		if time.Since(start) > 250*time.Millisecond {
			slow++
		}
	}
	if slow > 1 {
		t.Fatalf("%d of 20 calls waited on the slow store", slow)
	}
}
