package cache_test

import (
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/cache/storetest"
)

// fakeClock is moved by the suite's Advance.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestMemoryStore(t *testing.T) {
	var clock *fakeClock
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) cache.Store {
			clock = &fakeClock{now: time.Unix(1_700_000_000, 0)}
			return cache.NewMemoryWithClock(clock.Now)
		},
		Advance: func(t *testing.T, d time.Duration) { clock.Advance(d) },
	})
}
