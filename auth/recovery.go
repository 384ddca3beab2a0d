package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// Recovery is what a replica does after the shared store lost its data (a
// Redis restarted without persistence, a failover to an empty replica,
// FLUSHALL) while replicas held tokens. A rotating refresh token presented
// twice gets its whole family revoked, and the one a replica holds may have
// been rotated away by a sibling since. So for a settling window nobody
// refreshes a rotating grant, every replica writes back the token it holds
// (the newest wins, under the fleet's lock), and refreshing resumes from the
// newest refresh token any replica held.
type Recovery struct {
	clock  clock.Clock
	window time.Duration

	mu    sync.Mutex
	until time.Time
}

// NewRecovery returns a Recovery whose settling window lasts window: longer
// than a sibling takes to notice the loss and write its token back.
func NewRecovery(window time.Duration, now clock.Clock) *Recovery {
	return &Recovery{clock: now, window: window}
}

// Begin starts (or extends) the settling window.
func (r *Recovery) Begin() {
	if r == nil {
		return
	}
	until := r.clock.Now().Add(r.window)
	r.mu.Lock()
	if until.After(r.until) {
		r.until = until
	}
	r.mu.Unlock()
}

// Settling reports whether the window is open.
func (r *Recovery) Settling() bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clock.Now().Before(r.until)
}

// settlePollInterval is how often a waiting refresh looks whether the window
// closed; it is short next to the window.
const settlePollInterval = 25 * time.Millisecond

// Wait returns when the window has closed, or ctx ended.
func (r *Recovery) Wait(ctx context.Context) error {
	for r.Settling() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the fleet to write its tokens back after the store lost its data: %w", ctx.Err())
		case <-time.After(settlePollInterval):
		}
	}
	return nil
}
