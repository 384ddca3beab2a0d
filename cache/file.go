package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// File is a Store for a single instance that keeps its values in a file, so
// that a laptop, a VM or a legacy tool's host keeps rotated refresh tokens
// across restarts without Redis. Every write replaces the file atomically
// (a temporary file, fsync, rename). It stores what it is given: wrap it in
// Sealed so the file holds only ciphertext. One process at a time may use a
// file: OpenFile takes an exclusive lock on it, and a second process is
// refused, since two would each refresh a rotating refresh token.
type File struct {
	path string
	lock *os.File // held for the process's life
	now  clock.Clock

	mu      sync.Mutex
	entries map[string]fileEntry
	locks   map[string]fileEntry // refresh locks live in memory only
}

// ErrFileInUse is a store file another process has open.
var ErrFileInUse = errors.New("another authsidecar process uses this token store file; a file store is for one instance (several replicas share tokens through REDIS_URL)")

type fileEntry struct {
	Value   []byte    `json:"value"`
	Expires time.Time `json:"expires,omitzero"`
}

func (e fileEntry) expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

type fileContent struct {
	Version int                  `json:"version"`
	Entries map[string]fileEntry `json:"entries"`
}

const fileVersion = 1

// OpenFile opens (or creates) the store at path. It fails when another
// process has it open.
func OpenFile(path string, now clock.Clock) (*File, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the directory of %s: %w", path, err)
		}
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	f := &File{path: path, lock: lock, now: now, entries: map[string]fileEntry{}, locks: map[string]fileEntry{}}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		lock.Close()
		return nil, fmt.Errorf("reading %s: %w", path, err)
	default:
		var c fileContent
		if err := json.Unmarshal(raw, &c); err != nil {
			lock.Close()
			return nil, fmt.Errorf("reading %s: not an authsidecar token store: %w", path, err)
		}
		if c.Version != fileVersion {
			lock.Close()
			return nil, fmt.Errorf("reading %s: a token store of version %d; this authsidecar reads version %d", path, c.Version, fileVersion)
		}
		for k, e := range c.Entries {
			f.entries[k] = e
		}
	}
	return f, nil
}

// Close releases the file for another process.
func (f *File) Close() error { return f.lock.Close() }

// persistLocked writes every live entry to the file, atomically.
func (f *File) persistLocked() error {
	now := f.now.Now()
	c := fileContent{Version: fileVersion, Entries: map[string]fileEntry{}}
	for k, e := range f.entries {
		if e.expired(now) {
			delete(f.entries, k)
			continue
		}
		c.Entries[k] = e
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding the token store: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*")
	if err != nil {
		return fmt.Errorf("writing the token store: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing to remove
	// One err through write, sync, close and rename: a write the disk
	// refuses must stop the rename, or a truncated file replaces the store.
	if _, err = tmp.Write(raw); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		return fmt.Errorf("writing the token store %s: %w", f.path, err)
	}
	// The rename is durable once the directory is.
	if dir, err := os.Open(filepath.Dir(f.path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// Get implements Store.
func (f *File) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	if !ok || e.expired(f.now.Now()) {
		return nil, ErrNotFound
	}
	return bytes.Clone(e.Value), nil
}

// Set implements Store.
func (f *File) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl < 0 {
		return errors.New("cache: negative ttl")
	}
	e := fileEntry{Value: bytes.Clone(value)}
	if ttl > 0 {
		e.Expires = f.now.Now().Add(ttl)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, had := f.entries[key]
	f.entries[key] = e
	if err := f.persistLocked(); err != nil {
		// What is not on disk is not stored: a restart would lose it.
		if had {
			f.entries[key] = old
		} else {
			delete(f.entries, key)
		}
		return err
	}
	return nil
}

// CompareAndDelete implements Store.
func (f *File) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	if !ok || e.expired(f.now.Now()) || !bytes.Equal(e.Value, old) {
		return false, nil
	}
	delete(f.entries, key)
	if err := f.persistLocked(); err != nil {
		f.entries[key] = e
		return false, err
	}
	return true, nil
}

// TryLock implements Locker. One process holds the file, so its locks need
// not outlive it and stay in memory.
func (f *File) TryLock(ctx context.Context, key, owner string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return errors.New("cache: lock ttl must be positive")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now.Now()
	if e, held := f.locks[key]; held && !e.expired(now) {
		return ErrLocked
	}
	f.locks[key] = fileEntry{Value: []byte(owner), Expires: now.Add(ttl)}
	return nil
}

// Unlock implements Locker.
func (f *File) Unlock(ctx context.Context, key, owner string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, held := f.locks[key]
	if !held || e.expired(f.now.Now()) || string(e.Value) != owner {
		return false, nil
	}
	delete(f.locks, key)
	return true, nil
}
