// Package storetest is the one behaviour suite every cache.LockingStore passes.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/cache"
)

// Harness describes a store under test.
type Harness struct {
	// New returns an empty store. Each subtest gets its own.
	New func(t *testing.T) cache.LockingStore
	// Advance moves the store's clock forward by d: a fake clock for the
	// memory store, FastForward for miniredis, a sleep for a real server.
	Advance func(t *testing.T, d time.Duration)
	// TTLUnit is the smallest TTL the store resolves reliably: a millisecond
	// for fake clocks, more for a real server whose clock cannot be moved.
	TTLUnit time.Duration
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	unit := h.TTLUnit
	if unit == 0 {
		unit = time.Millisecond
	}

	t.Run("GetMissing", func(t *testing.T) {
		s := h.New(t)
		if _, err := s.Get(ctx, "absent"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Get of a missing key: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("SetGetOverwrite", func(t *testing.T) {
		s := h.New(t)
		mustSet(t, s, "k", "v1", 0)
		mustGet(t, s, "k", "v1")
		mustSet(t, s, "k", "v2", 0)
		mustGet(t, s, "k", "v2")
	})

	t.Run("BinaryValues", func(t *testing.T) {
		s := h.New(t)
		v := string([]byte{0, 1, 2, 0xff, '\n', 0})
		mustSet(t, s, "bin", v, 0)
		mustGet(t, s, "bin", v)
	})

	t.Run("ValueIsACopy", func(t *testing.T) {
		s := h.New(t)
		buf := []byte("original")
		if err := s.Set(ctx, "k", buf, 0); err != nil {
			t.Fatal(err)
		}
		copy(buf, "mutated!")
		got, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		got[0] = 'X'
		mustGet(t, s, "k", "original")
	})

	t.Run("TTLExpires", func(t *testing.T) {
		s := h.New(t)
		mustSet(t, s, "short", "v", 20*unit)
		mustSet(t, s, "forever", "v", 0)
		mustGet(t, s, "short", "v")
		h.Advance(t, 40*unit)
		if _, err := s.Get(ctx, "short"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Get after TTL: err = %v, want ErrNotFound", err)
		}
		mustGet(t, s, "forever", "v")
	})

	t.Run("CompareAndDelete", func(t *testing.T) {
		s := h.New(t)
		mustSet(t, s, "k", "new", 0)
		ok, err := s.CompareAndDelete(ctx, "k", []byte("old"))
		if err != nil || ok {
			t.Fatalf("CompareAndDelete with a stale value = %v, %v; want false, nil", ok, err)
		}
		mustGet(t, s, "k", "new")
		ok, err = s.CompareAndDelete(ctx, "k", []byte("new"))
		if err != nil || !ok {
			t.Fatalf("CompareAndDelete with the current value = %v, %v; want true, nil", ok, err)
		}
		if _, err := s.Get(ctx, "k"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Get after CompareAndDelete: err = %v, want ErrNotFound", err)
		}
		ok, err = s.CompareAndDelete(ctx, "k", []byte("new"))
		if err != nil || ok {
			t.Fatalf("CompareAndDelete of a missing key = %v, %v; want false, nil", ok, err)
		}
	})

	t.Run("LockExclusive", func(t *testing.T) {
		s := h.New(t)
		if err := s.TryLock(ctx, "lock", "a", time.Minute); err != nil {
			t.Fatalf("first TryLock: %v", err)
		}
		if err := s.TryLock(ctx, "lock", "b", time.Minute); !errors.Is(err, cache.ErrLocked) {
			t.Fatalf("second owner's TryLock: err = %v, want ErrLocked", err)
		}
		if ok, err := s.Unlock(ctx, "lock", "b"); err != nil || ok {
			t.Fatalf("Unlock by a non-owner = %v, %v; want false, nil", ok, err)
		}
		if err := s.TryLock(ctx, "lock", "b", time.Minute); !errors.Is(err, cache.ErrLocked) {
			t.Fatalf("a non-owner's Unlock released the lock: %v", err)
		}
		if ok, err := s.Unlock(ctx, "lock", "a"); err != nil || !ok {
			t.Fatalf("Unlock by the owner = %v, %v; want true, nil", ok, err)
		}
		if err := s.TryLock(ctx, "lock", "b", time.Minute); err != nil {
			t.Fatalf("TryLock after release: %v", err)
		}
	})

	t.Run("LockExpires", func(t *testing.T) {
		s := h.New(t)
		if err := s.TryLock(ctx, "lock", "crashed", 20*unit); err != nil {
			t.Fatal(err)
		}
		h.Advance(t, 40*unit)
		if err := s.TryLock(ctx, "lock", "next", time.Minute); err != nil {
			t.Fatalf("TryLock after the holder's TTL: %v", err)
		}
		// The crashed owner coming back must not release the new owner's lock.
		if ok, err := s.Unlock(ctx, "lock", "crashed"); err != nil || ok {
			t.Fatalf("Unlock by an expired owner = %v, %v; want false, nil", ok, err)
		}
		if err := s.TryLock(ctx, "lock", "third", time.Minute); !errors.Is(err, cache.ErrLocked) {
			t.Fatalf("lock was released by its expired owner: %v", err)
		}
	})

	t.Run("LockContended", func(t *testing.T) {
		s := h.New(t)
		const contenders = 32
		var winners atomic.Int32
		var wg sync.WaitGroup
		for i := range contenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.TryLock(ctx, "lock", fmt.Sprintf("owner-%d", i), time.Minute)
				switch {
				case err == nil:
					winners.Add(1)
				case !errors.Is(err, cache.ErrLocked):
					t.Errorf("TryLock: %v", err)
				}
			}()
		}
		wg.Wait()
		if n := winners.Load(); n != 1 {
			t.Fatalf("%d contenders got the lock, want exactly 1", n)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := h.New(t)
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Set(canceled, "k", []byte("v"), 0); err == nil {
			t.Fatal("Set with a canceled context succeeded")
		}
	})
}

func mustSet(t *testing.T, s cache.Store, key, value string, ttl time.Duration) {
	t.Helper()
	if err := s.Set(context.Background(), key, []byte(value), ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s cache.Store, key, want string) {
	t.Helper()
	got, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}
