package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/clock"
)

// FleetConfig configures a Fleet.
type FleetConfig struct {
	Route string
	Grant Grant
	// Store keeps the token where every replica and the consent flow see
	// it; Locker holds the refresh lock. One value is usually both. Nil
	// means a store of this process alone.
	Store  cache.Store
	Locker cache.Locker
	// Key is the token's key in Store; LegacyKey, when set, is where an
	// earlier version kept it, read once when Key holds nothing.
	Key, LegacyKey string
	// Margin is how long before expiry a stored token counts as due; it
	// must be the Keeper's. Zero means 60 seconds.
	Margin time.Duration
	// LockTTL bounds how long a crashed replica can hold the refresh lock;
	// it must outlive one refresh. Zero means 15 seconds.
	LockTTL time.Duration
	// Recovery, when set, is shared by the routes of a replica: while it
	// settles after the store lost its data, a rotating grant waits for
	// the fleet's newest refresh token instead of refreshing.
	Recovery *Recovery
	// StoreLost, when set, tells whether the store lost its data since the
	// replica last looked (cache.Marker); a rotating grant asks it, under
	// the lock, before it refreshes.
	StoreLost func(ctx context.Context) bool
	Clock     clock.Clock
	Logger    *zap.Logger
	Observer  Observer
	// Account names the route's account (empty: the route's own), and
	// Tracer, when set, traces lock waits and token requests.
	Account string
	Tracer  trace.Tracer
}

// Fleet gets tokens for a fleet of replicas sharing a store, wrapping a Grant
// as x/oauth2's ReuseTokenSource wraps a TokenSource: a token another holder
// stored is adopted; otherwise it takes the route's lock, re-reads the store
// (the previous holder may just have finished), re-checks, asks the grant,
// saves, and unlocks. A sibling holding the lock is waited for, so the fleet
// refreshes each token once.
type Fleet struct {
	cfg FleetConfig
	log *zap.Logger

	mu       sync.Mutex
	storeErr error // the last store failure; nil once the store answers
}

// NewFleet returns a Fleet for one route's token.
func NewFleet(cfg FleetConfig) *Fleet {
	if cfg.Store == nil {
		m := cache.NewMemory()
		cfg.Store, cfg.Locker = m, m
	}
	if cfg.Locker == nil {
		if l, ok := cfg.Store.(cache.Locker); ok {
			cfg.Locker = l
		}
	}
	if cfg.Key == "" {
		cfg.Key = "token:" + cfg.Route
	}
	if cfg.Margin <= 0 {
		cfg.Margin = 60 * time.Second
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 15 * time.Second
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Fleet{cfg: cfg, log: log.With(zap.String("route", cfg.Route))}
}

// lockPollInterval is how often a replica waiting for a sibling's refresh
// looks for its token: a refresh takes a round trip to the vendor, so a few
// looks at most.
const lockPollInterval = 25 * time.Millisecond

// Obtain gets a token to replace prev (possibly empty or expired). rejected
// is an access token the upstream refused: it is never adopted. adopted says
// the token came from the store, not from the grant.
func (f *Fleet) Obtain(ctx context.Context, prev Token, rejected string) (tok Token, adopted bool, err error) {
	if _, static := f.cfg.Grant.(StaticGrant); static {
		// Every replica has a configured token already; storing it would
		// only let a replaced one (a new ACCESS_TOKEN file) be adopted.
		tok, err := f.cfg.Grant.Fetch(ctx, prev)
		return tok, false, err
	}
	owner := cache.NewLockOwner()
	var waiting trace.Span // a wait for a sibling's refresh, traced
	defer func() { spanEnd(waiting, "done", err) }()
	for {
		stored, err := f.load(ctx)
		switch {
		case err == nil:
			if f.adoptable(stored, rejected) {
				return stored, true, nil
			}
			prev = newer(prev, stored)
		case errors.Is(err, cache.ErrUnsealable):
			// Sealed with a key no longer configured: as good as absent.
			f.log.Warn("stored token does not open with the configured keys; getting a new one", zap.Error(err))
		case !errors.Is(err, cache.ErrNotFound):
			return f.obtainWithoutStore(ctx, prev, err)
		case f.rotates() && prev.RefreshToken != "" && !prev.Obtained.IsZero():
			// This replica held a token the store should hold: the
			// store lost its data, even if no ping noticed.
			f.log.Warn("the token store lost this route's token; waiting for the fleet to write its newest back before refreshing")
			f.cfg.Recovery.Begin()
		}
		if f.rotates() && f.cfg.Recovery.Settling() {
			if prev.RefreshToken != "" {
				if err := f.Resync(ctx, prev); err != nil {
					f.log.Warn("writing the held token back failed", zap.Error(err))
				}
			}
			if err := f.cfg.Recovery.Wait(ctx); err != nil {
				return Token{}, false, err
			}
			continue // the store now holds the fleet's newest token
		}

		err = f.cfg.Locker.TryLock(ctx, f.lockKey(), owner, f.cfg.LockTTL)
		switch {
		case err == nil:
			tok, adopted, err := f.obtainHoldingLock(ctx, owner, prev, rejected)
			if errors.Is(err, errRecovering) {
				continue
			}
			return tok, adopted, err
		case errors.Is(err, cache.ErrLocked):
			if waiting == nil && f.cfg.Tracer != nil {
				_, waiting = spanStart(ctx, f.cfg.Tracer, "fleet lock wait", trace.SpanKindInternal, routeAttrs(f.cfg.Route, f.cfg.Account)...)
			}
			f.cfg.Observer.LockWait(f.cfg.Route)
			select {
			case <-ctx.Done():
				return Token{}, false, fmt.Errorf("waiting for another replica's refresh: %w", ctx.Err())
			case <-time.After(lockPollInterval):
			}
		default:
			return f.obtainWithoutStore(ctx, prev, err)
		}
	}
}

// rotates reports whether the grant's refresh tokens are single-use.
func (f *Fleet) rotates() bool {
	r, ok := f.cfg.Grant.(Rotating)
	return ok && r.RotatesRefreshTokens()
}

// newer is whichever of held and stored was obtained later: the store may
// hold a refresh token a sibling rotated, and a rotated-away one is refused.
func newer(held, stored Token) Token {
	if stored.Obtained.After(held.Obtained) {
		return stored
	}
	return held
}

func (f *Fleet) lockKey() string { return "lock:" + f.cfg.Key }

// adoptable reports whether a stored token can be served instead of
// refreshing: valid, not the one the upstream refused, not due.
func (f *Fleet) adoptable(t Token, rejected string) bool {
	now := f.cfg.Clock.Now()
	return t.Valid(now) && t.AccessToken != rejected && !refreshDue(t, now, f.cfg.Margin)
}

func (f *Fleet) obtainHoldingLock(ctx context.Context, owner string, prev Token, rejected string) (Token, bool, error) {
	unlock := func() {
		if err := cache.Release(f.cfg.Locker, f.lockKey(), owner); err != nil {
			f.log.Warn("releasing the refresh lock failed; it expires by itself", zap.Error(err))
		}
	}
	if stored, err := f.load(ctx); err == nil {
		if f.adoptable(stored, rejected) {
			unlock()
			return stored, true, nil
		}
		prev = newer(prev, stored)
	}
	if f.rotates() && f.cfg.StoreLost != nil && f.cfg.StoreLost(ctx) {
		// The store lost its data (and this lock is new): a sibling may
		// hold a newer refresh token than any here. Wait for the fleet
		// to write its tokens back.
		unlock()
		f.cfg.Recovery.Begin()
		return Token{}, false, errRecovering
	}
	tok, adopted, err := f.fetch(ctx, prev, rejected)
	if err != nil || adopted {
		unlock()
		return tok, adopted, err
	}
	if err := f.save(ctx, tok); err != nil {
		f.log.Warn("writing token store failed; serving the token from memory, and holding the refresh lock until it is written", zap.Error(err))
		// Until the store has the new (rotated) refresh token, a sibling
		// must not refresh with the old one: the lock stays taken while
		// the write is retried, and its TTL bounds how long.
		go f.saveLater(tok, unlock)
		return tok, false, nil
	}
	unlock()
	return tok, false, nil
}

// obtainWithoutStore refreshes while the store is down. A grant whose
// refresh tokens rotate must not refresh without the fleet's lock: two
// replicas presenting one refresh token would get the whole family revoked.
func (f *Fleet) obtainWithoutStore(ctx context.Context, prev Token, storeErr error) (Token, bool, error) {
	f.noteStore(storeErr)
	if f.rotates() {
		return Token{}, false, fmt.Errorf("token store unavailable (%v); this route's refresh tokens rotate, and refreshing without the fleet's lock could get them revoked", storeErr)
	}
	f.log.Warn("token store unavailable; refreshing without the fleet's lock", zap.Error(storeErr))
	tok, _, err := f.fetch(ctx, prev, "")
	if err != nil {
		return Token{}, false, err
	}
	_ = f.save(ctx, tok)
	return tok, false, nil
}

// fetch asks the grant. A refresh refused as invalid_grant may mean a
// sibling rotated the refresh token meanwhile (its lock expired, or the
// store was down): the store is read again before giving up.
func (f *Fleet) fetch(ctx context.Context, prev Token, rejected string) (_ Token, _ bool, err error) {
	ctx, span := spanStart(ctx, f.cfg.Tracer, "token request", trace.SpanKindClient, routeAttrs(f.cfg.Route, f.cfg.Account)...)
	defer func() { spanEnd(span, "obtained", err) }()
	tok, err := f.cfg.Grant.Fetch(ctx, prev)
	if err != nil && invalidGrant(err) {
		if stored, lerr := f.load(ctx); lerr == nil {
			if f.adoptable(stored, rejected) {
				return stored, true, nil
			}
			if stored.RefreshToken != "" && stored.RefreshToken != prev.RefreshToken {
				tok, err = f.cfg.Grant.Fetch(ctx, stored)
			}
		}
	}
	if err != nil {
		return Token{}, false, err
	}
	if tok.Obtained.IsZero() {
		tok.Obtained = f.cfg.Clock.Now()
	}
	return tok, false, nil
}
