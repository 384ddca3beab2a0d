package auth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	Route string
	// Source is where tokens come from: the route's Fleet.
	Source *Fleet
	// Timeout bounds one refresh, token call included.
	Timeout time.Duration
	// Margin is how long before expiry a token is refreshed. It is capped at
	// half the token's lifetime, so short-lived tokens are not refreshed on
	// every call. Zero means 60 seconds.
	Margin time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed refresh.
	MinBackoff, MaxBackoff time.Duration
	// ForcedRefreshInterval bounds refreshes forced by upstream 401s: at
	// most one per interval, unless the refused token is one that refresh
	// did not touch. Any caller can make an upstream answer 401 (a path
	// that always does), so this bounds what callers cost the token
	// endpoint. Zero means 5 seconds.
	ForcedRefreshInterval time.Duration
	Logger                *zap.Logger
	Clock                 clock.Clock
	// Observer, when set, is told of refreshes and token expiry, for metrics.
	Observer Observer
	// Account names the route's account this keeper is for (empty: the
	// route's own), for logs and spans.
	Account string
	// Tracer, when set, traces refreshes.
	Tracer trace.Tracer
}

// Keeper keeps one route's token fresh in this process. It serves the token
// it holds while it is fresh, refreshes ahead of expiry, lets one refresh
// run at a time while other callers wait for its result, and backs off after
// a failure. Where the token comes from, and how the fleet agrees on it, is
// its Source's business.
type Keeper struct {
	cfg KeeperConfig
	log *zap.Logger

	mu  sync.Mutex
	cur Token
	// rejected is an access token the upstream refused; it is not served,
	// nor adopted from the store, again, unless refreshing gives it back.
	rejected string
	// forcedAt is when a 401 last forced a refresh; forcedFrom and
	// forcedTo are the tokens it replaced and got.
	forcedAt             time.Time
	forcedFrom, forcedTo string
	flight               *flight
	// failures counts refreshes failed in a row; retryAt and lastErr hold
	// the back-off they earned.
	failures int
	retryAt  time.Time
	lastErr  *FetchError
}

type flight struct {
	done chan struct{}
	tok  Token
	err  error
	span trace.Span // the refresh's; nil when not traced
}

// NewKeeper returns a Keeper that holds no token yet; the first call to
// Token gets one.
func NewKeeper(cfg KeeperConfig) *Keeper {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Margin <= 0 {
		cfg.Margin = 60 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.ForcedRefreshInterval <= 0 {
		cfg.ForcedRefreshInterval = 5 * time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("route", cfg.Route))
	if cfg.Account != "" {
		log = log.With(zap.String("account", cfg.Account))
	}
	return &Keeper{cfg: cfg, log: log}
}

// Token returns a token that is valid now. When none is held it waits for a
// refresh, at most until ctx ends or the refresh times out. A token near its
// expiry is returned at once while a refresh runs in the background.
func (k *Keeper) Token(ctx context.Context) (Token, error) {
	now := k.cfg.Clock.Now()
	k.mu.Lock()
	if k.servable(k.cur, now) {
		tok := k.cur
		if refreshDue(tok, now, k.cfg.Margin) {
			// Failure here is logged by the refresh; the held token is
			// still good for this call.
			_, _, _ = k.startLocked(ctx, now)
		}
		k.mu.Unlock()
		return tok, nil
	}
	f, joined, err := k.startLocked(ctx, now)
	k.mu.Unlock()
	if err != nil {
		return Token{}, err
	}
	if joined && f.span != nil {
		linkToRefresh(ctx, f.span.SpanContext())
	}
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return Token{}, &FetchError{Route: k.cfg.Route, Kind: Unavailable, Err: fmt.Errorf("waiting for token refresh: %w", ctx.Err())}
	}
}

// Invalidate tells the keeper the upstream refused accessToken. Only when it
// is still the token held is it dropped, so a token refreshed meanwhile by
// another caller is kept (compare-and-invalidate). The refresh token is kept.
// Refreshes forced this way are bounded (ForcedRefreshInterval): a token
// that a forced refresh just replaced or produced keeps being served until
// the interval ends, so an upstream path that always answers 401 costs the
// token endpoint one request per interval, not one per call.
func (k *Keeper) Invalidate(accessToken string) {
	now := k.cfg.Clock.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if accessToken == "" || k.cur.AccessToken != accessToken {
		return
	}
	recent := now.Before(k.forcedAt.Add(k.cfg.ForcedRefreshInterval))
	if recent && (accessToken == k.forcedFrom || accessToken == k.forcedTo) {
		return
	}
	k.rejected = accessToken
	k.forcedAt, k.forcedFrom, k.forcedTo = now, accessToken, ""
	// A refused token ends any back-off earned before: the next call must
	// try to get a new one.
	k.retryAt = time.Time{}
}

// KeepWarm refreshes the held token ahead of its expiry even when no call
// comes, until ctx ends: an idle route's next call does not wait for the
// vendor, and its expiry metric stays true. It looks every interval; a
// refresh goes through the Source, so a fleet refreshes once per lifetime
// (siblings adopt the token from the store). A route that holds no token
// (never called, or waiting for consent) is left alone.
func (k *Keeper) KeepWarm(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := k.cfg.Clock.Now()
		k.mu.Lock()
		if k.cur.AccessToken != "" && (refreshDue(k.cur, now, k.cfg.Margin) || !k.cur.Valid(now)) {
			// A failure is logged by the refresh and backs off as usual.
			_, _, _ = k.startLocked(context.Background(), now)
		}
		k.mu.Unlock()
	}
}

// Status is what the keeper can say about its token without revealing it.
type Status struct {
	HasToken  bool
	Expiry    time.Time
	LastError string
	// StoreError is set while the token store is failing.
	StoreError string
}

// Status reports the keeper's state for health pages.
func (k *Keeper) Status() Status {
	k.mu.Lock()
	s := Status{HasToken: k.servable(k.cur, k.cfg.Clock.Now()), Expiry: k.cur.Expiry}
	if k.lastErr != nil {
		s.LastError = k.lastErr.Error()
	}
	k.mu.Unlock()
	if err := k.cfg.Source.StoreError(); err != nil {
		s.StoreError = err.Error()
	}
	return s
}

func (k *Keeper) servable(t Token, now time.Time) bool {
	return t.Valid(now) && t.AccessToken != k.rejected
}

// startLocked returns the refresh under way (joined), starts one, or
// returns the error of the last refresh while its back-off lasts, so that a
// crowd of callers does not hammer a token endpoint that is down. A refresh
// a call starts is traced as that call's child.
func (k *Keeper) startLocked(ctx context.Context, now time.Time) (f *flight, joined bool, err error) {
	if k.flight != nil {
		return k.flight, true, nil
	}
	if k.lastErr != nil && now.Before(k.retryAt) {
		return nil, false, k.lastErr
	}
	f = &flight{done: make(chan struct{})}
	// The refresh outlives the caller that started it: others wait on it.
	refreshCtx := trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(ctx))
	refreshCtx, f.span = spanStart(refreshCtx, k.cfg.Tracer, "token refresh", trace.SpanKindInternal, routeAttrs(k.cfg.Route, k.cfg.Account)...)
	k.flight = f
	go k.run(refreshCtx, f, k.cur, k.rejected)
	return f, false, nil
}

func (k *Keeper) run(ctx context.Context, f *flight, prev Token, rejected string) {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	defer cancel()
	started := k.cfg.Clock.Now()
	tok, adopted, err := k.cfg.Source.Obtain(ctx, prev, rejected)
	now := k.cfg.Clock.Now()
	outcome := "obtained"
	if adopted {
		outcome = "adopted"
	}
	spanEnd(f.span, outcome, err)

	k.mu.Lock()
	k.flight = nil
	if err != nil {
		k.failures++
		// Copied while the lock is held: the log line below must not read
		// k.failures after another refresh may have changed it.
		failures := k.failures
		wait := k.backoff(failures)
		k.retryAt = now.Add(wait)
		k.lastErr = &FetchError{Route: k.cfg.Route, Kind: KindOf(err), RetryAfter: k.retryAt, Err: err}
		f.err = k.lastErr
		k.mu.Unlock()
		// Told before the waiters are released, so the failure is on
		// record before any caller's answer is.
		k.cfg.Observer.Refresh(k.cfg.Route, KindOf(err).String(), now.Sub(started))
		k.log.Warn("token refresh failed",
			zap.String("reason", KindOf(err).String()),
			zap.Error(err),
			zap.Int("failures_in_a_row", failures),
			zap.Duration("retry_in", wait))
		close(f.done)
		return
	}
	k.cur, k.failures, k.lastErr, k.retryAt = tok, 0, nil, time.Time{}
	if rejected != "" && rejected == k.forcedFrom {
		k.forcedTo = tok.AccessToken
	}
	// The grant's answer is served even when it is the token refused (a
	// static token, a vendor that hands the same token back): it is the
	// only one to be had, and the upstream may take it next time.
	k.rejected = ""
	f.tok = tok
	k.mu.Unlock()
	close(f.done)

	result := "success"
	if adopted {
		result = "adopted"
	}
	k.cfg.Observer.Refresh(k.cfg.Route, result, now.Sub(started))
	k.cfg.Observer.TokenExpiry(k.cfg.Route, tok.Expiry)
	fields := []zap.Field{zap.Duration("took", now.Sub(started))}
	if !tok.Expiry.IsZero() {
		fields = append(fields, zap.Duration("expires_in", tok.Expiry.Sub(now).Round(time.Second)))
	}
	if adopted {
		k.log.Debug("token taken from store", fields...)
	} else {
		k.log.Info("token obtained", fields...)
	}
}

// backoff is exponential with jitter, so replicas that failed together do
// not retry together.
func (k *Keeper) backoff(failures int) time.Duration {
	d := k.cfg.MinBackoff << min(failures-1, 16)
	if d > k.cfg.MaxBackoff || d <= 0 {
		d = k.cfg.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}
