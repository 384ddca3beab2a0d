package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrSlow is a store operation that did not finish within its deadline. A
// store that answers too late counts as down: waiting for it would stall
// every call that needs a token.
var ErrSlow = errors.New("cache: the store did not answer in time")

// Deadlined is a store whose every operation has a deadline. Its errors for
// an operation that ran out of time wrap ErrSlow.
type Deadlined struct {
	inner   LockingStore
	timeout time.Duration
}

// WithDeadline wraps inner so that each operation takes at most timeout.
func WithDeadline(inner LockingStore, timeout time.Duration) *Deadlined {
	return &Deadlined{inner: inner, timeout: timeout}
}

// do runs op with the deadline, and names a deadline it missed.
func (d *Deadlined) do(ctx context.Context, op func(context.Context) error) error {
	opCtx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	err := op(opCtx)
	if err != nil && ctx.Err() == nil && opCtx.Err() != nil {
		return fmt.Errorf("%w (STORE_TIMEOUT %s): %w", ErrSlow, d.timeout, err)
	}
	return err
}

// Get implements Store.
func (d *Deadlined) Get(ctx context.Context, key string) (v []byte, err error) {
	err = d.do(ctx, func(ctx context.Context) error { v, err = d.inner.Get(ctx, key); return err })
	return v, err
}

// Set implements Store.
func (d *Deadlined) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return d.do(ctx, func(ctx context.Context) error { return d.inner.Set(ctx, key, value, ttl) })
}

// CompareAndDelete implements Store.
func (d *Deadlined) CompareAndDelete(ctx context.Context, key string, old []byte) (ok bool, err error) {
	err = d.do(ctx, func(ctx context.Context) error { ok, err = d.inner.CompareAndDelete(ctx, key, old); return err })
	return ok, err
}

// TryLock implements Locker.
func (d *Deadlined) TryLock(ctx context.Context, key, owner string, ttl time.Duration) error {
	return d.do(ctx, func(ctx context.Context) error { return d.inner.TryLock(ctx, key, owner, ttl) })
}

// Unlock implements Locker.
func (d *Deadlined) Unlock(ctx context.Context, key, owner string) (ok bool, err error) {
	err = d.do(ctx, func(ctx context.Context) error { ok, err = d.inner.Unlock(ctx, key, owner); return err })
	return ok, err
}

// Ping implements Pinger, with the same deadline: a store too slow for its
// callers is reported down, not healthy.
func (d *Deadlined) Ping(ctx context.Context) error {
	p, ok := d.inner.(Pinger)
	if !ok {
		return nil
	}
	return d.do(ctx, p.Ping)
}

// Close closes the inner store when it holds a connection.
func (d *Deadlined) Close() error {
	if c, ok := d.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
