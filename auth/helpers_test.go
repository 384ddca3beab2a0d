package auth

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/clock"
)

// keeperOptions are what tests vary of a route's keeper and fleet.
type keeperOptions struct {
	Store                  cache.LockingStore
	Key                    string
	Clock                  clock.Clock
	Timeout                time.Duration
	MinBackoff, MaxBackoff time.Duration
	Observer               Observer
}

// newKeeper builds a keeper on a fleet for grant, as a route does.
func newKeeper(route string, grant Grant, o keeperOptions) *Keeper {
	var store cache.Store
	var locker cache.Locker
	if o.Store != nil {
		store, locker = o.Store, o.Store
	}
	fleet := NewFleet(FleetConfig{Route: route, Grant: grant, Store: store, Locker: locker, Key: o.Key,
		Clock: o.Clock, Observer: o.Observer, LockTTL: o.Timeout + 5*time.Second})
	return NewKeeper(KeeperConfig{Route: route, Source: fleet, Clock: o.Clock, Timeout: o.Timeout,
		MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff, Observer: o.Observer})
}

// storedToken reads the token a store holds under key, through the store's
// own API, as a sibling replica would.
func storedToken(t *testing.T, store cache.Store, key string) Token {
	t.Helper()
	raw, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("reading stored token: %v", err)
	}
	tok, err := decodeStoredToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// refreshes is an Observer that counts finished refreshes, and a Grant
// wrapper that counts started ones: together they tell a test when no
// refresh is under way, without looking inside the keeper.
type refreshes struct {
	nopObserver
	started, finished atomic.Int32
	mu                sync.Mutex
	results           []string
}

func (r *refreshes) Refresh(_, result string, _ time.Duration) {
	r.mu.Lock()
	r.results = append(r.results, result)
	r.mu.Unlock()
	r.finished.Add(1)
}

func (r *refreshes) wrap(g Grant) Grant { return &countedGrant{Grant: g, started: &r.started} }

// waitIdle waits until every refresh that asked the grant has finished.
func (r *refreshes) waitIdle(t *testing.T) {
	t.Helper()
	waitFor(t, "refreshes to finish", func() bool { return r.finished.Load() >= r.started.Load() })
}

type countedGrant struct {
	Grant
	started *atomic.Int32
}

func (g *countedGrant) Fetch(ctx context.Context, prev Token) (Token, error) {
	g.started.Add(1)
	return g.Grant.Fetch(ctx, prev)
}

// RotatesRefreshTokens passes the wrapped grant's answer through.
func (g *countedGrant) RotatesRefreshTokens() bool {
	r, ok := g.Grant.(Rotating)
	return ok && r.RotatesRefreshTokens()
}
