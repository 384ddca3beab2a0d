package auth

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/cache"
)

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	Route string
	Grant Grant
	// Store keeps the token where others (replicas, the consent flow) see it.
	Store cache.Store
	// StoreKey is the token's key in Store.
	StoreKey string
	// Timeout bounds one refresh, token call included.
	Timeout time.Duration
	// Margin is how long before expiry a token is refreshed. It is capped at
	// half the token's lifetime, so short-lived tokens are not refreshed on
	// every call. Zero means 60 seconds.
	Margin time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed refresh.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *zap.Logger
	Now                    func() time.Time
	// Observer, when set, is told of refreshes, lock waits, store errors
	// and token expiry, for metrics.
	Observer Observer
}

// Observer is told what a Keeper does. Every method must be cheap and safe
// for concurrent use.
type Observer interface {
	// Refresh reports one refresh: result is success, adopted (taken from
	// the store), or the ErrorKind of its failure.
	Refresh(route, result string, took time.Duration)
	LockWait(route string)
	StoreError(route string)
	// TokenExpiry reports the expiry of the token now held (zero: none or
	// not known).
	TokenExpiry(route string, expiry time.Time)
}

type nopObserver struct{}

func (nopObserver) Refresh(string, string, time.Duration) {}
func (nopObserver) LockWait(string)                       {}
func (nopObserver) StoreError(string)                     {}
func (nopObserver) TokenExpiry(string, time.Time)         {}

// Keeper keeps one route's token fresh. It serves the token it holds while it
// is fresh, refreshes ahead of expiry, and lets one refresh run at a time
// while other callers wait for its result.
type Keeper struct {
	cfg KeeperConfig
	now func() time.Time
	log *zap.Logger

	mu  sync.Mutex
	cur Token
	// rejected is an access token the upstream refused; it is not served,
	// nor adopted from the store, again.
	rejected string
	flight   *flight
	// failures counts refreshes failed in a row; retryAt and lastErr hold
	// the back-off they earned.
	failures int
	retryAt  time.Time
	lastErr  *FetchError
	// storeErr is the last store failure, nil once the store answers again.
	storeErr error
}

type flight struct {
	done chan struct{}
	tok  Token
	err  error
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
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.Store == nil {
		cfg.Store = cache.NewMemory()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.StoreKey == "" {
		cfg.StoreKey = "token:" + cfg.Route
	}
	k := &Keeper{cfg: cfg, now: cfg.Now, log: cfg.Logger}
	if k.now == nil {
		k.now = time.Now
	}
	if k.log == nil {
		k.log = zap.NewNop()
	}
	k.log = k.log.With(zap.String("route", cfg.Route))
	return k
}

// Route is the route the keeper serves.
func (k *Keeper) Route() string { return k.cfg.Route }

// Token returns a token that is valid now. When none is held it waits for a
// refresh, at most until ctx ends or the refresh times out. A token near its
// expiry is returned at once while a refresh runs in the background.
func (k *Keeper) Token(ctx context.Context) (Token, error) {
	now := k.now()
	k.mu.Lock()
	if k.servable(k.cur, now) {
		tok := k.cur
		if k.due(tok, now) {
			// Failure here is logged by the refresh; the held token is
			// still good for this call.
			_, _ = k.startLocked(now)
		}
		k.mu.Unlock()
		return tok, nil
	}
	f, err := k.startLocked(now)
	k.mu.Unlock()
	if err != nil {
		return Token{}, err
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
func (k *Keeper) Invalidate(accessToken string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if accessToken != "" && k.cur.AccessToken == accessToken {
		k.rejected = accessToken
		// A refused token ends any back-off earned before: the next call
		// must try to get a new one.
		k.retryAt = time.Time{}
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

func (k *Keeper) noteStoreError(err error) {
	k.cfg.Observer.StoreError(k.cfg.Route)
	k.mu.Lock()
	k.storeErr = err
	k.mu.Unlock()
}

func (k *Keeper) noteStoreOK() {
	k.mu.Lock()
	k.storeErr = nil
	k.mu.Unlock()
}

func (k *Keeper) noteLockWait() { k.cfg.Observer.LockWait(k.cfg.Route) }

// Resync writes the token held back to the store, after the store was down:
// siblings see it again without waiting for the next refresh.
func (k *Keeper) Resync(ctx context.Context) error {
	k.mu.Lock()
	tok, ok := k.cur, k.servable(k.cur, k.now())
	k.mu.Unlock()
	if !ok {
		return nil
	}
	// A newer token written by a sibling meanwhile is kept.
	if stored, err := k.load(ctx); err == nil && !stored.Obtained.Before(tok.Obtained) {
		k.noteStoreOK()
		return nil
	}
	if err := k.save(ctx, tok); err != nil {
		k.noteStoreError(err)
		return err
	}
	k.noteStoreOK()
	return nil
}

// Status reports the keeper's state for health pages.
func (k *Keeper) Status() Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := Status{HasToken: k.servable(k.cur, k.now()), Expiry: k.cur.Expiry}
	if k.lastErr != nil {
		s.LastError = k.lastErr.Error()
	}
	if k.storeErr != nil {
		s.StoreError = k.storeErr.Error()
	}
	return s
}

func (k *Keeper) servable(t Token, now time.Time) bool {
	return t.Valid(now) && t.AccessToken != k.rejected
}

// due reports whether t should be refreshed: within the margin of its
// expiry, the margin being at most half its lifetime.
func (k *Keeper) due(t Token, now time.Time) bool {
	if t.Expiry.IsZero() {
		return false
	}
	margin := k.cfg.Margin
	if !t.Obtained.IsZero() {
		if half := t.Expiry.Sub(t.Obtained) / 2; half < margin {
			margin = half
		}
	}
	return !now.Before(t.Expiry.Add(-margin))
}

// startLocked returns the refresh under way, starts one, or returns the
// error of the last refresh while its back-off lasts, so that a crowd of
// callers does not hammer a token endpoint that is down.
func (k *Keeper) startLocked(now time.Time) (*flight, error) {
	if k.flight != nil {
		return k.flight, nil
	}
	if k.lastErr != nil && now.Before(k.retryAt) {
		return nil, k.lastErr
	}
	f := &flight{done: make(chan struct{})}
	k.flight = f
	prev := k.cur
	rejected := k.rejected
	go k.run(f, prev, rejected)
	return f, nil
}

func (k *Keeper) run(f *flight, prev Token, rejected string) {
	// The refresh outlives the caller that started it: others wait on it.
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.Timeout)
	defer cancel()
	started := k.now()
	tok, adopted, err := k.obtain(ctx, prev, rejected)
	now := k.now()

	k.mu.Lock()
	k.flight = nil
	if err != nil {
		k.failures++
		wait := k.backoff(k.failures)
		k.retryAt = now.Add(wait)
		k.lastErr = &FetchError{Route: k.cfg.Route, Kind: KindOf(err), RetryAfter: k.retryAt, Err: err}
		f.err = k.lastErr
		k.mu.Unlock()
		k.cfg.Observer.Refresh(k.cfg.Route, KindOf(err).String(), now.Sub(started))
		k.log.Warn("token refresh failed",
			zap.String("reason", KindOf(err).String()),
			zap.Error(err),
			zap.Int("failures_in_a_row", k.failures),
			zap.Duration("retry_in", wait))
		close(f.done)
		return
	}
	k.cur, k.failures, k.lastErr, k.retryAt = tok, 0, nil, time.Time{}
	if tok.AccessToken != k.rejected {
		k.rejected = ""
	}
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

// obtain gets a token for the fleet. A token another holder (a sibling
// replica, the consent flow) already stored is adopted. Otherwise the
// route's lock in the store is taken, the store re-read (the previous holder
// may just have finished), the grant asked, and the new token stored before
// the lock is released; while a sibling holds the lock, obtain waits for its
// token instead of refreshing too. adopted says the token came from the store.
func (k *Keeper) obtain(ctx context.Context, prev Token, rejected string) (Token, bool, error) {
	owner := lockOwner()
	for {
		stored, err := k.load(ctx)
		switch {
		case err == nil:
			if k.adoptable(stored, rejected) {
				return stored, true, nil
			}
			// The store may hold a newer refresh token (rotated by a
			// sibling); a rotated-away one would be refused.
			if stored.Obtained.After(prev.Obtained) {
				prev = stored
			}
		case errors.Is(err, cache.ErrUnsealable):
			// Sealed with a key no longer configured: as good as absent.
			k.log.Warn("stored token does not open with the configured keys; getting a new one", zap.Error(err))
		case !errors.Is(err, cache.ErrNotFound):
			return k.obtainWithoutStore(ctx, prev, err)
		}

		err = k.cfg.Store.TryLock(ctx, k.lockKey(), owner, k.lockTTL())
		switch {
		case err == nil:
			return k.obtainHoldingLock(ctx, owner, prev, rejected)
		case errors.Is(err, cache.ErrLocked):
			k.noteLockWait()
			select {
			case <-ctx.Done():
				return Token{}, false, fmt.Errorf("waiting for another replica's refresh: %w", ctx.Err())
			case <-time.After(lockPollInterval):
			}
		default:
			return k.obtainWithoutStore(ctx, prev, err)
		}
	}
}

// lockPollInterval is how often a replica waiting for a sibling's refresh
// looks for its token: a refresh takes a round trip to the vendor, so a few
// looks at most.
const lockPollInterval = 25 * time.Millisecond

func (k *Keeper) lockKey() string { return "lock:" + k.cfg.StoreKey }

// lockTTL outlives a token call, so the lock is not lost mid-refresh, yet
// bounds how long a crashed holder blocks the fleet.
func (k *Keeper) lockTTL() time.Duration { return k.cfg.Timeout + 5*time.Second }

func lockOwner() string {
	b := make([]byte, 12)
	crand.Read(b)
	return hex.EncodeToString(b)
}

// adoptable reports whether a stored token can be served instead of
// refreshing: valid, not the one the upstream refused, not due.
func (k *Keeper) adoptable(t Token, rejected string) bool {
	now := k.now()
	return t.Valid(now) && t.AccessToken != rejected && !k.due(t, now)
}

func (k *Keeper) obtainHoldingLock(ctx context.Context, owner string, prev Token, rejected string) (Token, bool, error) {
	defer func() {
		// Released even when ctx is done; the TTL covers a failure here.
		unlockCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := k.cfg.Store.Unlock(unlockCtx, k.lockKey(), owner); err != nil {
			k.log.Warn("releasing the refresh lock failed; it expires by itself", zap.Error(err))
		}
	}()
	if stored, err := k.load(ctx); err == nil {
		if k.adoptable(stored, rejected) {
			return stored, true, nil
		}
		if stored.Obtained.After(prev.Obtained) {
			prev = stored
		}
	}
	tok, adopted, err := k.fetch(ctx, prev, rejected)
	if err != nil || adopted {
		return tok, adopted, err
	}
	if err := k.save(ctx, tok); err != nil {
		k.noteStoreError(err)
		k.log.Warn("writing token store failed; serving the token from memory", zap.Error(err))
	} else {
		k.noteStoreOK()
	}
	return tok, false, nil
}

// obtainWithoutStore refreshes while the store is down. A grant whose
// refresh tokens rotate must not refresh without the fleet's lock: two
// replicas presenting one refresh token would get the whole family revoked.
func (k *Keeper) obtainWithoutStore(ctx context.Context, prev Token, storeErr error) (Token, bool, error) {
	k.noteStoreError(storeErr)
	if r, ok := k.cfg.Grant.(Rotating); ok && r.RotatesRefreshTokens() {
		return Token{}, false, fmt.Errorf("token store unavailable (%v); this route's refresh tokens rotate, and refreshing without the fleet's lock could get them revoked", storeErr)
	}
	k.log.Warn("token store unavailable; refreshing without the fleet's lock", zap.Error(storeErr))
	tok, _, err := k.fetch(ctx, prev, "")
	if err != nil {
		return Token{}, false, err
	}
	if err := k.save(ctx, tok); err == nil {
		k.noteStoreOK()
	}
	return tok, false, nil
}

// fetch asks the grant. A refresh refused as invalid_grant may mean a
// sibling rotated the refresh token meanwhile (its lock expired, or the
// store was down): the store is read again before giving up.
func (k *Keeper) fetch(ctx context.Context, prev Token, rejected string) (Token, bool, error) {
	tok, err := k.cfg.Grant.Fetch(ctx, prev)
	if err != nil && InvalidGrant(err) {
		if stored, lerr := k.load(ctx); lerr == nil {
			if k.adoptable(stored, rejected) {
				return stored, true, nil
			}
			if stored.RefreshToken != "" && stored.RefreshToken != prev.RefreshToken {
				tok, err = k.cfg.Grant.Fetch(ctx, stored)
			}
		}
	}
	if err != nil {
		return Token{}, false, err
	}
	if tok.Obtained.IsZero() {
		tok.Obtained = k.now()
	}
	return tok, false, nil
}

// Rotating is a grant that can say whether its refresh tokens are
// single-use, which forbids refreshing without the fleet's lock.
type Rotating interface {
	RotatesRefreshTokens() bool
}

// Store writes tok as the route's token, as the consent flow does after a
// code exchange, and serves it from now on.
func (k *Keeper) Store(ctx context.Context, tok Token) error {
	if tok.Obtained.IsZero() {
		tok.Obtained = k.now()
	}
	if err := k.save(ctx, tok); err != nil {
		return err
	}
	k.mu.Lock()
	k.cur, k.rejected, k.failures, k.lastErr, k.retryAt = tok, "", 0, nil, time.Time{}
	k.mu.Unlock()
	k.cfg.Observer.TokenExpiry(k.cfg.Route, tok.Expiry)
	return nil
}

func (k *Keeper) load(ctx context.Context) (Token, error) {
	raw, err := k.cfg.Store.Get(ctx, k.cfg.StoreKey)
	if err != nil {
		return Token{}, fmt.Errorf("reading stored token: %w", err)
	}
	var tok Token
	if err := json.Unmarshal(raw, &tok); err != nil {
		return Token{}, fmt.Errorf("decoding stored token: %w", err)
	}
	return tok, nil
}

func (k *Keeper) save(ctx context.Context, tok Token) error {
	raw, err := json.Marshal(tok)
	if err != nil {
		return fmt.Errorf("encoding token: %w", err)
	}
	// A token with a refresh token outlives its access token; one without
	// is useless once expired.
	var ttl time.Duration
	if tok.RefreshToken == "" && !tok.Expiry.IsZero() {
		ttl = tok.Expiry.Sub(k.now())
		if ttl <= 0 {
			return nil
		}
	}
	if err := k.cfg.Store.Set(ctx, k.cfg.StoreKey, raw, ttl); err != nil {
		return fmt.Errorf("writing stored token: %w", err)
	}
	return nil
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

// Forget drops the route's token from memory and the store, after it was
// revoked.
func (k *Keeper) Forget(ctx context.Context) error {
	k.mu.Lock()
	k.cur, k.rejected = Token{}, ""
	k.mu.Unlock()
	k.cfg.Observer.TokenExpiry(k.cfg.Route, time.Time{})
	raw, err := k.cfg.Store.Get(ctx, k.cfg.StoreKey)
	if errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forgetting stored token: %w", err)
	}
	if _, err := k.cfg.Store.CompareAndDelete(ctx, k.cfg.StoreKey, raw); err != nil {
		return fmt.Errorf("forgetting stored token: %w", err)
	}
	return nil
}
