package cache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
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

// Regression: the in-process store never purged expired entries; 206k
// consent states kept 44 MB after they expired.
func TestMemoryPurgesExpiredEntries(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := cache.NewMemoryWithClock(clock.Now)
	ctx := context.Background()
	value := make([]byte, 1<<10)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := range 50_000 {
		if err := m.Set(ctx, fmt.Sprintf("consent-state:%d", i), value, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	full := heap()
	if full-before < 40<<20 {
		t.Fatalf("the entries took only %d bytes; the test measures nothing", full-before)
	}
	clock.Advance(2 * time.Minute)
	if err := m.Set(ctx, "one-more", value, time.Minute); err != nil {
		t.Fatal(err)
	}
	if after := heap(); after > before+(full-before)/4 {
		t.Fatalf("heap %d MiB after every entry expired (%d MiB full, %d MiB before)", after>>20, full>>20, before>>20)
	}
	runtime.KeepAlive(m)
}

// The marker notices a store that lost its data, for the replica that found
// it gone and for one that finds it replaced.
func TestMarkerNoticesLostData(t *testing.T) {
	ctx := context.Background()
	store := cache.NewMemory()
	a, b := cache.NewMarker(store, "marker"), cache.NewMarker(store, "marker")
	for _, m := range []*cache.Marker{a, b, a, b} {
		if lost, err := m.Check(ctx); err != nil || lost {
			t.Fatalf("nothing lost yet: %v %v", lost, err)
		}
	}
	if _, err := store.CompareAndDelete(ctx, "marker", mustGet(t, store, "marker")); err != nil {
		t.Fatal(err)
	}
	if lost, err := a.Check(ctx); err != nil || !lost {
		t.Fatalf("a: lost = %v, %v; want true", lost, err)
	}
	if lost, err := b.Check(ctx); err != nil || !lost {
		t.Fatalf("b, after a put the marker back: lost = %v, %v; want true", lost, err)
	}
	if lost, _ := a.Check(ctx); lost {
		t.Fatal("a reported the same loss twice")
	}
}

// Regression: replicas starting together on an empty store each put a
// marker of their own, the later overwriting the earlier, so the first
// replica's next look found "another" marker and took the store for lost
// (its rotating refreshes then waited for a recovery that was not one).
func TestMarkerReplicasStartingTogether(t *testing.T) {
	ctx := context.Background()
	var both sync.WaitGroup
	both.Add(2)
	store := &interleaved{LockingStore: cache.NewMemory(), both: &both}
	a, b := cache.NewMarker(store, "marker"), cache.NewMarker(store, "marker")
	var wg sync.WaitGroup
	for _, m := range []*cache.Marker{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Check(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, m := range []*cache.Marker{a, b} {
		if lost, err := m.Check(ctx); err != nil || lost {
			t.Fatalf("nothing was lost: lost = %v, %v", lost, err)
		}
	}
}

// interleaved holds its first two reads until both were made: two
// replicas that both find the store empty.
type interleaved struct {
	cache.LockingStore
	both  *sync.WaitGroup
	reads atomic.Int32
}

func (s *interleaved) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.LockingStore.Get(ctx, key)
	if s.reads.Add(1) <= 2 {
		s.both.Done()
		s.both.Wait()
	}
	return v, err
}

func mustGet(t *testing.T, s cache.Store, key string) []byte {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFileStore(t *testing.T) {
	var clock *fakeclock.Clock
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) cache.LockingStore {
			clock = fakeclock.New(time.Unix(1_700_000_000, 0))
			f, err := cache.OpenFile(filepath.Join(t.TempDir(), "tokens"), clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		},
		Advance: func(t *testing.T, d time.Duration) { clock.Advance(d) },
	})
}

// What a file store holds survives the process; a second process on the
// same file is refused, as two would refresh one rotating token.
func TestFileStoreKeepsValuesAndOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir", "tokens")
	ctx := context.Background()
	f, err := cache.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set(ctx, "token:a", []byte("rotated"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.OpenFile(path, nil); !errors.Is(err, cache.ErrFileInUse) {
		t.Fatalf("a second open: %v, want ErrFileInUse", err)
	}
	f.Close()
	g, err := cache.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if v := mustGet(t, g, "token:a"); string(v) != "rotated" {
		t.Fatalf("after a restart: %q", v)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("store file mode %v, %v; want 0600", st.Mode(), err)
	}
}
