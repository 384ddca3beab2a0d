package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
)

// Marker tells whether a shared store lost its data — a restart without
// persistence, a failover to an empty replica, FLUSHALL — even when the
// outage was too short for a ping to fail: every replica expects to find one
// key it has seen, and a store that lost its data has lost that key too.
type Marker struct {
	store Store
	key   string

	mu   sync.Mutex
	seen []byte
}

// NewMarker watches store through the marker at key.
func NewMarker(store Store, key string) *Marker { return &Marker{store: store, key: key} }

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
		v = make([]byte, 16)
		rand.Read(v)
		v = []byte(hex.EncodeToString(v))
		if err := m.store.Set(ctx, m.key, v, 0); err != nil {
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
