package cache_test

import (
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/cache/storetest"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

func TestMemoryStore(t *testing.T) {
	var clock *fakeclock.Clock
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) cache.LockingStore {
			clock = fakeclock.New(time.Unix(1_700_000_000, 0))
			return cache.NewMemoryWithClock(clock.Now)
		},
		Advance: func(t *testing.T, d time.Duration) { clock.Advance(d) },
	})
}
