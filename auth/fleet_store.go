package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/authsidecar/authsidecar/cache"
)

// The Fleet's reads and writes of the store: its own, and those it does for
// others — a token a person gave, one written back after an outage or a data
// loss, one forgotten after revocation, the fingerprints the consent flow
// compares.

// Save writes tok as the route's token, for every holder of the store.
func (f *Fleet) Save(ctx context.Context, tok Token) error { return f.save(ctx, tok) }

// Resync writes held back to the store after the store was down or lost its
// data, so siblings see it without waiting for the next refresh. The newest
// wins: a token a sibling obtained later is kept. Checked and written under
// the fleet's lock, so two replicas writing back at once cannot leave the
// older refresh token in the store.
func (f *Fleet) Resync(ctx context.Context, held Token) error {
	return f.underLock(ctx, func() error { return f.saveNewest(ctx, held) })
}

// saveNewest writes held unless the store has a token obtained later; the
// caller holds the fleet's lock.
func (f *Fleet) saveNewest(ctx context.Context, held Token) error {
	if stored, err := f.load(ctx); err == nil && !stored.Obtained.Before(held.Obtained) {
		f.noteStore(nil)
		return nil
	}
	return f.save(ctx, held)
}

// underLock runs fn holding the fleet's lock, waiting for a sibling that
// holds it.
func (f *Fleet) underLock(ctx context.Context, fn func() error) error {
	owner := cache.NewLockOwner()
	if err := cache.Acquire(ctx, f.cfg.Locker, f.lockKey(), owner, f.cfg.LockTTL, lockPollInterval); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for another replica's refresh: %w", err)
		}
		return fmt.Errorf("taking the refresh lock: %w", err)
	}
	defer func() { _ = cache.Release(f.cfg.Locker, f.lockKey(), owner) }()
	return fn()
}

// Forget deletes the stored token, unless it changed since it was read.
func (f *Fleet) Forget(ctx context.Context) error {
	raw, err := f.cfg.Store.Get(ctx, f.cfg.Key)
	if errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	if err == nil {
		_, err = f.cfg.Store.CompareAndDelete(ctx, f.cfg.Key, raw)
	}
	if err != nil {
		return fmt.Errorf("forgetting stored token: %w", err)
	}
	return nil
}

// Fingerprint names the token the store holds now without revealing it:
// "none" when it holds none. The consent flow compares fingerprints to tell
// whether a route was connected while a person was consenting.
func (f *Fleet) Fingerprint(ctx context.Context) (string, error) {
	raw, err := f.loadRaw(ctx)
	if errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrUnsealable) {
		return "none", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading stored token: %w", err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:12]), nil
}

// SaveIfUnchanged saves tok only while the stored token's fingerprint is
// still fp, checked and written under the fleet's lock so that nobody
// connects the route in between. It reports whether it saved.
func (f *Fleet) SaveIfUnchanged(ctx context.Context, tok Token, fp string) (saved bool, err error) {
	err = f.underLock(ctx, func() error {
		now, err := f.Fingerprint(ctx)
		if err != nil || now != fp {
			return err
		}
		saved = true
		return f.save(ctx, tok)
	})
	return saved, err
}

// errRecovering sends Obtain round again after it found the store had lost
// its data.
var errRecovering = errors.New("the store lost its data; waiting for the fleet's tokens")

// saveLater retries writing tok until it is written or the lock expires,
// then releases the lock.
func (f *Fleet) saveLater(tok Token, unlock func()) {
	defer unlock()
	// The lock's TTL runs on the store's clock, in real time.
	expired := time.After(f.cfg.LockTTL)
	retry := time.NewTicker(saveRetryInterval)
	defer retry.Stop()
	for {
		select {
		case <-expired:
			f.log.Warn("the token could not be written before the refresh lock expired; siblings may refresh with an older refresh token")
			return
		case <-retry.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f.saveNewest(ctx, tok) // the lock is still ours
		cancel()
		if err == nil {
			f.log.Info("token written to the store after it came back")
			return
		}
	}
}

// saveRetryInterval is how often a token that could not be written is tried
// again while its refresh lock is held.
const saveRetryInterval = 100 * time.Millisecond

// StoreError is the last store failure, nil while the store answers.
func (f *Fleet) StoreError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.storeErr
}

// noteStore records whether the store answered (err nil) or failed.
func (f *Fleet) noteStore(err error) {
	if err != nil {
		f.cfg.Observer.StoreError(f.cfg.Route)
	}
	f.mu.Lock()
	f.storeErr = err
	f.mu.Unlock()
}

func (f *Fleet) load(ctx context.Context) (Token, error) {
	raw, err := f.loadRaw(ctx)
	if err != nil {
		return Token{}, fmt.Errorf("reading stored token: %w", err)
	}
	return decodeStoredToken(raw)
}

// loadRaw reads the stored token's bytes, from the legacy key when the
// current one holds nothing.
func (f *Fleet) loadRaw(ctx context.Context) ([]byte, error) {
	raw, err := f.cfg.Store.Get(ctx, f.cfg.Key)
	if errors.Is(err, cache.ErrNotFound) && f.cfg.LegacyKey != "" {
		raw, err = f.cfg.Store.Get(ctx, f.cfg.LegacyKey)
	}
	return raw, err
}

func (f *Fleet) save(ctx context.Context, tok Token) error {
	raw, err := encodeStoredToken(tok)
	if err != nil {
		return err
	}
	ttl, keep := storedTTL(tok, f.cfg.Clock.Now())
	if !keep {
		return nil
	}
	if err := f.cfg.Store.Set(ctx, f.cfg.Key, raw, ttl); err != nil {
		err = fmt.Errorf("writing stored token: %w", err)
		f.noteStore(err)
		return err
	}
	f.noteStore(nil)
	return nil
}
