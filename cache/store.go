// Package cache keeps tokens where every replica of the sidecar can find them.
//
// A Store holds opaque values under string keys. The in-process store is the
// default; the Redis store shares values across replicas. Callers that put
// secrets into a Store that leaves the process must seal them first.
package cache

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Get when the key holds no value (never set,
// deleted, or expired).
var ErrNotFound = errors.New("cache: key not found")

// ErrLocked is returned by TryLock when another owner holds the lock.
var ErrLocked = errors.New("cache: lock held by another owner")

// Store is key/value storage with compare-and-delete. Every token store
// implements it; all methods are safe for concurrent use.
type Store interface {
	// Get returns the value stored under key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key. A ttl of zero means no expiry.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// CompareAndDelete deletes key only if it still holds old, and reports
	// whether it did. It is how a token that failed is invalidated without
	// throwing away a newer one written meanwhile by someone else.
	CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error)
}

// Locker is a lock every holder of the same store sees: the fleet's refresh
// lock. Every store in this package is also a Locker, so one value serves both.
type Locker interface {
	// TryLock takes the lock named key for owner, for at most ttl, or returns
	// ErrLocked when another owner holds it. The ttl bounds how long a crashed
	// owner can keep others waiting.
	TryLock(ctx context.Context, key, owner string, ttl time.Duration) error
	// Unlock releases the lock named key if owner still holds it, and reports
	// whether it did. A lock that expired and was taken by someone else is
	// left alone.
	Unlock(ctx context.Context, key, owner string) (bool, error)
}

// LockingStore is a Store that is also a Locker: what a fleet of replicas
// coordinates its refreshes through.
type LockingStore interface {
	Store
	Locker
}

// Pinger is a store whose server can be asked whether it answers. Stores in
// this process need not implement it.
type Pinger interface {
	Ping(ctx context.Context) error
}
