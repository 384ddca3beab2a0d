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

// What the Fleet writes for others: a token a person gave, one written back
// after an outage, one forgotten after revocation, and the fingerprints the
// consent flow compares.

// Save writes tok as the route's token, for every holder of the store.
func (f *Fleet) Save(ctx context.Context, tok Token) error { return f.save(ctx, tok) }

// Resync writes held back to the store after the store was down or lost its
// data, so siblings see it without waiting for the next refresh. The newest
// wins: a token a sibling obtained later is kept. Checked and written under
// the fleet's lock, so two replicas writing back at once cannot leave the
// older refresh token in the store.
func (f *Fleet) Resync(ctx context.Context, held Token) error {
	return f.underLock(ctx, func() error {
		if stored, err := f.load(ctx); err == nil && !stored.Obtained.Before(held.Obtained) {
			f.noteStore(nil)
			return nil
		}
		return f.save(ctx, held)
	})
}

// underLock runs fn holding the fleet's lock, waiting for a sibling that
// holds it.
func (f *Fleet) underLock(ctx context.Context, fn func() error) error {
	owner := lockOwner()
	for {
		err := f.cfg.Locker.TryLock(ctx, f.lockKey(), owner, f.cfg.LockTTL)
		if err == nil {
			break
		}
		if !errors.Is(err, cache.ErrLocked) {
			return fmt.Errorf("taking the refresh lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for another replica's refresh: %w", ctx.Err())
		case <-time.After(lockPollInterval):
		}
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = f.cfg.Locker.Unlock(unlockCtx, f.lockKey(), owner)
	}()
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
