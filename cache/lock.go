package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// NewLockOwner is a name for one holder of a lock, unique across the fleet.
func NewLockOwner() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Acquire takes the lock named key for owner, for at most ttl, looking again
// every poll while another owner holds it. Its error is the store's, or
// ctx's when the wait ended first.
func Acquire(ctx context.Context, l Locker, key, owner string, ttl, poll time.Duration) error {
	for {
		err := l.TryLock(ctx, key, owner, ttl)
		if !errors.Is(err, ErrLocked) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// Release releases owner's lock named key, even when the caller's context
// is done; the lock's ttl covers a release that fails.
func Release(l Locker, key, owner string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := l.Unlock(ctx, key, owner)
	return err
}
