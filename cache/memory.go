package cache

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// Memory is the in-process Store: the embedded default when no Redis is
// configured. Values live as long as the process.
type Memory struct {
	now clock.Clock

	mu      sync.Mutex
	entries map[string]memoryEntry
	// sweptAt is when expired entries were last purged: entries nobody
	// reads again (consent states, locks) must not stay forever.
	sweptAt time.Time
}

// sweepEvery is how often writes purge expired entries.
const sweepEvery = time.Minute

type memoryEntry struct {
	value   []byte
	expires time.Time // zero: never
}

func (e memoryEntry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{entries: make(map[string]memoryEntry)}
}

func (m *Memory) lookup(key string) (memoryEntry, bool) {
	e, ok := m.entries[key]
	if !ok {
		return memoryEntry{}, false
	}
	if e.expired(m.now.Now()) {
		delete(m.entries, key)
		return memoryEntry{}, false
	}
	return e, true
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok {
		return nil, ErrNotFound
	}
	// A copy, so that a caller changing what it got cannot change the store.
	return bytes.Clone(e.value), nil
}

// Set implements Store.
func (m *Memory) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl < 0 {
		return errors.New("cache: negative ttl")
	}
	e := memoryEntry{value: bytes.Clone(value)}
	if ttl > 0 {
		e.expires = m.now.Now().Add(ttl)
	}
	m.mu.Lock()
	m.entries[key] = e
	m.sweepLocked()
	m.mu.Unlock()
	return nil
}

// sweepLocked purges expired entries, at most once per sweepEvery: a write
// pays for it, amortized over the writes of a minute.
func (m *Memory) sweepLocked() {
	now := m.now.Now()
	if now.Sub(m.sweptAt) < sweepEvery {
		return
	}
	m.sweptAt = now
	for k, e := range m.entries {
		if e.expired(now) {
			delete(m.entries, k)
		}
	}
}

// CompareAndDelete implements Store.
func (m *Memory) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok || !bytes.Equal(e.value, old) {
		return false, nil
	}
	delete(m.entries, key)
	return true, nil
}

// TryLock implements Store. Locks share the key space with values, as they do
// in Redis, so callers keep lock names apart from value names.
func (m *Memory) TryLock(ctx context.Context, key, owner string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return errors.New("cache: lock ttl must be positive")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, held := m.lookup(key); held {
		return ErrLocked
	}
	m.entries[key] = memoryEntry{value: []byte(owner), expires: m.now.Now().Add(ttl)}
	return nil
}

// Unlock implements Store.
func (m *Memory) Unlock(ctx context.Context, key, owner string) (bool, error) {
	return m.CompareAndDelete(ctx, key, []byte(owner))
}

// NewMemoryWithClock returns an empty in-process store that reads time from
// now, so tests can expire entries without sleeping.
func NewMemoryWithClock(now clock.Clock) *Memory {
	m := NewMemory()
	m.now = now
	return m
}
