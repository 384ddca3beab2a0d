package cache_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/cache/storetest"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

func TestMiniredisStore(t *testing.T) {
	var mr *miniredis.Miniredis
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) cache.LockingStore {
			mr = miniredis.RunT(t)
			client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { client.Close() })
			return cache.NewRedis(client, "test:")
		},
		Advance: func(t *testing.T, d time.Duration) { mr.FastForward(d) },
	})
}

// RealRedisAddr is where a real redis-server listens for the tests:
// AUTHSIDECAR_TEST_REDIS=127.0.0.1:6379. CI always sets it; locally the
// real-server runs are skipped without it.
func realRedisAddr(t *testing.T) string {
	addr := os.Getenv("AUTHSIDECAR_TEST_REDIS")
	if addr == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the store suite against a real redis-server: set AUTHSIDECAR_TEST_REDIS")
		}
		t.Skip("no real Redis: set AUTHSIDECAR_TEST_REDIS=host:port to run the suite against one")
	}
	return addr
}

func TestRealRedisStore(t *testing.T) {
	addr := realRedisAddr(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) cache.LockingStore {
			client := redis.NewClient(&redis.Options{Addr: addr})
			t.Cleanup(func() { client.Close() })
			if err := client.Ping(context.Background()).Err(); err != nil {
				t.Fatalf("real Redis at %s: %v", addr, err)
			}
			// A prefix per subtest keeps runs apart on a shared server.
			return cache.NewRedis(client, "authsidecar-test:"+t.Name()+":"+time.Now().Format(time.RFC3339Nano)+":")
		},
		// A real server's clock cannot be moved.
		Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
		TTLUnit: 25 * time.Millisecond,
	})
}

func TestSealedStore(t *testing.T) {
	var clock *fakeclock.Clock
	sealer := newSealer(t, key(1))
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) cache.LockingStore {
			clock = fakeclock.New(time.Unix(1_700_000_000, 0))
			return cache.NewSealed(cache.NewMemoryWithClock(clock.Now), sealer)
		},
		Advance: func(t *testing.T, d time.Duration) { clock.Advance(d) },
	})
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, cache.KeySize) }

func newSealer(t *testing.T, current []byte, previous ...[]byte) *cache.Sealer {
	t.Helper()
	s, err := cache.NewSealer(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealing(t *testing.T) {
	ctx := context.Background()
	inner := cache.NewMemory()
	secret := []byte(`{"access_token":"very-secret-access","refresh_token":"very-secret-refresh"}`)
	sealed := cache.NewSealed(inner, newSealer(t, key(1)))
	if err := sealed.Set(ctx, "token:a", secret, 0); err != nil {
		t.Fatal(err)
	}

	raw, _ := inner.Get(ctx, "token:a")
	if bytes.Contains(raw, []byte("very-secret")) {
		t.Fatal("the inner store holds the plaintext")
	}
	// Copied to another key, the value does not open.
	inner.Set(ctx, "token:b", raw, 0)
	if _, err := sealed.Get(ctx, "token:b"); !errors.Is(err, cache.ErrUnsealable) {
		t.Fatalf("value copied to another key: err = %v, want ErrUnsealable", err)
	}
	// Tampered with, it does not open.
	tampered := bytes.Clone(raw)
	tampered[len(tampered)-1] ^= 1
	inner.Set(ctx, "token:a", tampered, 0)
	if _, err := sealed.Get(ctx, "token:a"); !errors.Is(err, cache.ErrUnsealable) {
		t.Fatalf("tampered value: err = %v, want ErrUnsealable", err)
	}
	inner.Set(ctx, "token:a", raw, 0)

	// Key rotation: the new key, with the old as previous, opens old values
	// and seals new ones with the new key; the old key alone cannot open those.
	rotated := cache.NewSealed(inner, newSealer(t, key(2), key(1)))
	if got, err := rotated.Get(ctx, "token:a"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("after rotation, old value: %q, %v", got, err)
	}
	rotated.Set(ctx, "token:c", secret, 0)
	if _, err := sealed.Get(ctx, "token:c"); !errors.Is(err, cache.ErrUnsealable) {
		t.Fatal("a value sealed with the new key opened with the old one")
	}
	// Another key altogether opens nothing.
	if _, err := cache.NewSealed(inner, newSealer(t, key(3))).Get(ctx, "token:a"); !errors.Is(err, cache.ErrUnsealable) {
		t.Fatal("a foreign key opened the value")
	}
}

func TestParseKey(t *testing.T) {
	if _, err := cache.ParseKey("c2hvcnQ="); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := cache.ParseKey("not base64!"); err == nil {
		t.Error("a non-base64 key was accepted")
	}
	if k, err := cache.ParseKey("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="); err != nil || len(k) != 32 {
		t.Errorf("a good key: %v", err)
	}
}

func TestOpenRedisKeepsPasswordsOutOfErrors(t *testing.T) {
	for _, tc := range []struct{ url, mode string }{
		{"redis://:hunter2@host:notaport", "single"},
		{"redis://:hunter2@host:6379", "sentinel"},
		{"ftp://:hunter2@host", "single"},
		{"redis://:hunter2@host", "nonsense"},
	} {
		_, err := cache.OpenRedis(tc.url, tc.mode)
		if err == nil {
			t.Errorf("%s (%s) accepted", tc.url, tc.mode)
			continue
		}
		if bytes.Contains([]byte(err.Error()), []byte("hunter2")) {
			t.Errorf("error reveals the password: %v", err)
		}
	}
}
