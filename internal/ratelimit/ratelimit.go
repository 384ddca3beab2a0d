// Package ratelimit keeps a fleet of sidecars polite to a vendor: when the
// vendor asks for a pause (429 or 503 with Retry-After, a rate limit at
// zero), every replica holds the route's calls back until it ends — the
// account's calls, when the call named an account — and a rate of the
// operator's own (NAME_RATE_LIMIT) is counted across the fleet. A held call
// waits up to NAME_RATE_LIMIT_MAX_WAIT, or is answered 429 by the sidecar.
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/proxy"
)

// Rate is N calls per Per; zero N: no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate reads "10/s", "600/m", "5000/h" (or "3/10s": any duration).
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count <= 0 {
		return Rate{}, fmt.Errorf("%q is not a rate such as 10/s or 600/m", s)
	}
	d, ok := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[per]
	if !ok {
		if d, err = time.ParseDuration(per); err != nil || d <= 0 {
			return Rate{}, fmt.Errorf("%q is not a rate such as 10/s or 600/m", s)
		}
	}
	return Rate{N: count, Per: d}, nil
}

// Shared is the fleet's store (cache.Redis): cool-downs are kept and
// announced through it, and the rate is counted in it.
type Shared interface {
	cache.Store
	Allow(ctx context.Context, key string, n int, per time.Duration, burst int) (time.Duration, error)
	Publish(ctx context.Context, channel string, msg []byte) error
}

// Observer is told what the limiter did, for metrics.
type Observer interface {
	// RateLimited counts a call held back: reason is cooldown or limit,
	// action waited or refused.
	RateLimited(route, reason, action string)
}

// Config configures one route's Limiter.
type Config struct {
	Route string
	Rate  Rate
	// MaxWait is how long a held call may wait; zero: it is refused at
	// once.
	MaxWait time.Duration
	// MaxCooldown caps what a vendor may ask for.
	MaxCooldown time.Duration
	// Shared, when set, makes the limiter the fleet's; nil: this process's.
	Shared   Shared
	Clock    clock.Clock
	Logger   *zap.Logger
	Observer Observer
	// StoreTimeout bounds each store operation on a call's path.
	StoreTimeout time.Duration
}

// Limiter is one route's: it implements proxy.Limiter.
type Limiter struct {
	cfg Config
	log *zap.Logger

	// sharedDownUntil (Unix nanoseconds) is when the shared store may be
	// asked again after it failed: until then calls do not wait on it.
	sharedDownUntil atomic.Int64

	mu sync.Mutex
	// until is each account's cool-down end ("" the route's own); an
	// entry, even a past one, means the store was asked (see untilFor).
	until map[string]cooldown
	local map[string]*rate.Limiter // the rate, without a shared store
}

type cooldown struct {
	end     time.Time
	checked time.Time // when the store was last asked
}

// New returns the route's limiter.
func New(cfg Config) *Limiter {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 500 * time.Millisecond
	}
	return &Limiter{cfg: cfg, log: cfg.Logger.With(zap.String("route", cfg.Route)),
		until: map[string]cooldown{}, local: map[string]*rate.Limiter{}}
}

// Admit implements proxy.Limiter.
func (l *Limiter) Admit(ctx context.Context, account string) error {
	deadline := l.cfg.Clock.Now().Add(l.cfg.MaxWait)
	waited := ""
	for {
		now := l.cfg.Clock.Now()
		reason, wait, reserved := "cooldown", l.untilFor(ctx, account).Sub(now), false
		if wait <= 0 {
			reason, wait, reserved = "limit", 0, false
			if l.cfg.Rate.N > 0 {
				wait, reserved = l.take(ctx, account, deadline.Sub(now))
			}
		}
		if wait <= 0 {
			break
		}
		if now.Add(wait).After(deadline) {
			l.observe(reason, "refused")
			return &proxy.RateLimitedError{Route: l.cfg.Route, Reason: reason, RetryAfter: wait}
		}
		waited = reason
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("waiting for route %s's rate limit: %w", l.cfg.Route, err)
		}
		if reserved {
			break
		}
	}
	if waited != "" {
		l.observe(waited, "waited")
	}
	return nil
}

func (l *Limiter) observe(reason, action string) {
	if l.cfg.Observer != nil {
		l.cfg.Observer.RateLimited(l.cfg.Route, reason, action)
	}
}

// take counts one call against the rate: zero when it may go now, else
// how long until it may. reserved says the call holds its place (the
// in-process limiter) and need not ask again after waiting.
func (l *Limiter) take(ctx context.Context, account string, budget time.Duration) (wait time.Duration, reserved bool) {
	if l.sharedUp() {
		ctx, cancel := context.WithTimeout(ctx, l.cfg.StoreTimeout)
		defer cancel()
		wait, err := l.cfg.Shared.Allow(ctx, "ratelimit:rate:"+l.cfg.Route+":"+account, l.cfg.Rate.N, l.cfg.Rate.Per, sharedBurst)
		if err == nil {
			return wait, false
		}
		// Counted in this process meanwhile: the rate holds per replica
		// rather than per fleet, and no call waits on a failing store.
		l.sharedFailed("the route's rate is counted by each replica", err)
	}
	l.mu.Lock()
	lim, ok := l.local[account]
	if !ok {
		lim = rate.NewLimiter(rate.Every(l.cfg.Rate.Per/time.Duration(l.cfg.Rate.N)), sharedBurst)
		l.local[account] = lim
	}
	l.mu.Unlock()
	now := l.cfg.Clock.Now()
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d > 0 && d > budget {
		r.CancelAt(now) // refused: the place goes back to the next caller
	}
	return d, true
}

// sharedRetry is how long a failed shared store is left alone.
const sharedRetry = 5 * time.Second

// sharedUp reports whether the shared store is to be asked now.
func (l *Limiter) sharedUp() bool {
	return l.cfg.Shared != nil && time.Now().UnixNano() >= l.sharedDownUntil.Load()
}

// sharedFailed leaves the shared store alone for sharedRetry, saying so
// once per failure.
func (l *Limiter) sharedFailed(meanwhile string, err error) {
	next := time.Now().Add(sharedRetry).UnixNano()
	if prev := l.sharedDownUntil.Swap(next); time.Now().UnixNano() >= prev {
		l.log.Warn("the shared store failed; for "+sharedRetry.String()+" "+meanwhile, zap.Error(err))
	}
}

// sharedBurst is how many calls the counter (the fleet's, or this
// process's) lets through at once.
// One more than a strict spacing: callers that waited race for the next
// slot across the network, and a slot lost to that race would be lost for
// good (GCRA keeps no credit), leaving the fleet a few percent under its
// rate.
const sharedBurst = 2

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
