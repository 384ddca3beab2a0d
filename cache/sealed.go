package cache

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// KeySize is the size of a TOKEN_ENCRYPTION_KEY: AES-256.
const KeySize = 32

// ParseKey reads a base64 key of KeySize bytes.
func ParseKey(b64 string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, errors.New("is not base64 (make one with: openssl rand -base64 32)")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("is %d bytes, want %d (make one with: openssl rand -base64 32)", len(key), KeySize)
	}
	return key, nil
}

// Sealer encrypts values with AES-256-GCM. The key's id and the value's key
// name are additional data: a value copied to another name does not open,
// and the id says which key (current or previous) opens a value.
type Sealer struct {
	keys atomic.Pointer[[]sealKey] // current first; replaced whole by Rotate
}

type sealKey struct {
	id   [4]byte
	aead cipher.AEAD
}

const sealVersion = 1

// NewSealer returns a Sealer that seals with current and opens with current
// or any of previous, so a key can be rotated without losing what is stored.
func NewSealer(current []byte, previous ...[]byte) (*Sealer, error) {
	var keys []sealKey
	for i, k := range append([][]byte{current}, previous...) {
		sk, err := newSealKey(k)
		if err != nil {
			return nil, fmt.Errorf("sealing key %d: %w", i, err)
		}
		keys = append(keys, sk)
	}
	s := &Sealer{}
	s.keys.Store(&keys)
	return s, nil
}

func newSealKey(k []byte) (sealKey, error) {
	if len(k) != KeySize {
		return sealKey{}, fmt.Errorf("is %d bytes, want %d", len(k), KeySize)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return sealKey{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealKey{}, err
	}
	return sealKey{id: keyID(k), aead: aead}, nil
}

// Rotate makes key the one values are sealed with from now on (a new
// TOKEN_ENCRYPTION_KEY file); the keys that opened values still open them.
func (s *Sealer) Rotate(key []byte) error {
	k, err := newSealKey(key)
	if err != nil {
		return fmt.Errorf("sealing key: %w", err)
	}
	keys := []sealKey{k}
	for _, old := range *s.keys.Load() {
		if old.id != k.id {
			keys = append(keys, old)
		}
	}
	s.keys.Store(&keys)
	return nil
}

// Accept makes key open values too, without sealing with it (a new
// TOKEN_ENCRYPTION_KEY_PREVIOUS file). Keys are only ever added while the
// sidecar runs, so no stored value stops opening; a key no longer
// configured is dropped at the next start.
func (s *Sealer) Accept(key []byte) error {
	k, err := newSealKey(key)
	if err != nil {
		return fmt.Errorf("sealing key: %w", err)
	}
	old := *s.keys.Load()
	if slices.ContainsFunc(old, func(have sealKey) bool { return have.id == k.id }) {
		return nil
	}
	keys := append(slices.Clone(old), k)
	s.keys.Store(&keys)
	return nil
}

// keyID names a key without revealing it.
func keyID(key []byte) [4]byte {
	sum := sha256.Sum256(append([]byte("authsidecar key id\x00"), key...))
	return [4]byte(sum[:4])
}

func additionalData(id [4]byte, name string) []byte {
	return append(append([]byte{sealVersion}, id[:]...), name...)
}

// Seal encrypts plaintext stored under name: version, key id, nonce, then
// the ciphertext.
func (s *Sealer) Seal(name string, plaintext []byte) ([]byte, error) {
	k := (*s.keys.Load())[0]
	out := make([]byte, 1+4+k.aead.NonceSize(), 1+4+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:5], k.id[:])
	if _, err := rand.Read(out[5:]); err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	return k.aead.Seal(out, out[5:], plaintext, additionalData(k.id, name)), nil
}

// ErrUnsealable is a stored value that no configured key opens: written with
// a key no longer configured, stored under another name, or tampered with.
var ErrUnsealable = errors.New("cache: stored value does not open with the configured keys")

// Open decrypts a value Seal made for name.
func (s *Sealer) Open(name string, sealed []byte) ([]byte, error) {
	if len(sealed) < 5 || sealed[0] != sealVersion {
		return nil, ErrUnsealable
	}
	id := [4]byte(sealed[1:5])
	for _, k := range *s.keys.Load() {
		if k.id != id {
			continue
		}
		if len(sealed) < 5+k.aead.NonceSize() {
			return nil, ErrUnsealable
		}
		nonce, ct := sealed[5:5+k.aead.NonceSize()], sealed[5+k.aead.NonceSize():]
		pt, err := k.aead.Open(nil, nonce, ct, additionalData(k.id, name))
		if err != nil {
			return nil, ErrUnsealable
		}
		return pt, nil
	}
	return nil, ErrUnsealable
}

// Sealed is a Store whose values are sealed before they reach inner. Lock
// owners are random ids, not secrets, and pass as they are.
type Sealed struct {
	inner  LockingStore
	sealer *Sealer
}

// NewSealed wraps inner.
func NewSealed(inner LockingStore, sealer *Sealer) *Sealed {
	return &Sealed{inner: inner, sealer: sealer}
}

// Get implements Store.
func (s *Sealed) Get(ctx context.Context, key string) ([]byte, error) {
	raw, err := s.inner.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.sealer.Open(key, raw)
}

// Set implements Store.
func (s *Sealed) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	sealed, err := s.sealer.Seal(key, value)
	if err != nil {
		return err
	}
	return s.inner.Set(ctx, key, sealed, ttl)
}

// CompareAndDelete implements Store. Sealing is randomized, so old is
// compared opened, and the sealed bytes read are what is compared-and-deleted
// on the inner store: a value replaced in between is kept.
func (s *Sealed) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	raw, err := s.inner.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if pt, err := s.sealer.Open(key, raw); err != nil || !bytes.Equal(pt, old) {
		return false, nil
	}
	return s.inner.CompareAndDelete(ctx, key, raw)
}

// TryLock implements Locker.
func (s *Sealed) TryLock(ctx context.Context, key, owner string, ttl time.Duration) error {
	return s.inner.TryLock(ctx, key, owner, ttl)
}

// Unlock implements Locker.
func (s *Sealed) Unlock(ctx context.Context, key, owner string) (bool, error) {
	return s.inner.Unlock(ctx, key, owner)
}

// Ping implements Pinger when the inner store does; a store in this process
// always answers.
func (s *Sealed) Ping(ctx context.Context) error {
	if p, ok := s.inner.(Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Close closes the inner store when it holds a connection.
func (s *Sealed) Close() error {
	if c, ok := s.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
