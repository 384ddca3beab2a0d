package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Marker tells whether a shared store lost its data — a restart without
// persistence, a failover to an empty replica, FLUSHALL — even when the
// outage was too short for a ping to fail: every replica expects to find one
// key it has seen, and a store that lost its data has lost that key too.
type Marker struct {
	store LockingStore
	key   string

	mu   sync.Mutex
	seen []byte
}

// NewMarker watches store through the marker at key. The marker is no
// secret: give it the store unsealed.
func NewMarker(store LockingStore, key string) *Marker { return &Marker{store: store, key: key} }

// markerLife is the marker's expiry: none that matters. It is put with the
// store's lock (SET NX), the only put-if-absent a store has.
const markerLife = 100 * 365 * 24 * time.Hour

// Check reports whether the store lost its data since this replica last
// looked: the marker is gone, or another replica put a new one back after
// finding it gone. A missing marker is put back. The first check only
// learns the marker.
func (m *Marker) Check(ctx context.Context) (lost bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.store.Get(ctx, m.key)
	switch {
	case errors.Is(err, ErrNotFound):
		// Put only if still absent: replicas that find the store empty
		// together must agree on one marker, or each would later take
		// the others' for a sign of loss.
		v = make([]byte, 16)
		rand.Read(v)
		v = []byte(hex.EncodeToString(v))
		switch err := m.store.TryLock(ctx, m.key, string(v), markerLife); {
		case errors.Is(err, ErrLocked):
			if v, err = m.store.Get(ctx, m.key); err != nil {
				return false, fmt.Errorf("reading the store's marker: %w", err)
			}
		case err != nil:
			return false, fmt.Errorf("putting the store's marker back: %w", err)
		}
	case errors.Is(err, ErrUnsealable):
		// Sealed with a key no longer configured: replace it as if gone.
		if err := m.store.Set(ctx, m.key, []byte("rekeyed"), 0); err != nil {
			return false, fmt.Errorf("putting the store's marker back: %w", err)
		}
		v = []byte("rekeyed")
	case err != nil:
		return false, fmt.Errorf("reading the store's marker: %w", err)
	}
	lost = m.seen != nil && !bytes.Equal(m.seen, v)
	m.seen = v
	return lost, nil
}
