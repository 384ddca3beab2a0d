package route

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/proxy"
)

// BenchmarkIdleAccounts is what 10,000 accounts on one route cost a
// replica once each was called and all went idle: the keepers it holds
// (bounded: the least recently used beyond maxLiveAccounts are dropped)
// and, with the in-process store, the tokens kept in it. With
// AUTHSIDECAR_TEST_REDIS set (host:port of a redis-server), the tokens are
// kept there, sealed, as a fleet keeps them, and the replica's RSS is all
// its own. Run it once:
//
//	go test -run '^$' -bench IdleAccounts -benchtime 1x ./internal/route
func BenchmarkIdleAccounts(b *testing.B) {
	b.Run("in-process", func(b *testing.B) { idleAccounts(b, nil) })
	if addr := os.Getenv("AUTHSIDECAR_TEST_REDIS"); addr != "" {
		b.Run("redis", func(b *testing.B) {
			client := redis.NewClient(&redis.Options{Addr: addr})
			defer client.Close()
			prefix := fmt.Sprintf("bench-%d:", time.Now().UnixNano())
			sealer, err := cache.NewSealer(make([]byte, 32))
			if err != nil {
				b.Fatal(err)
			}
			idleAccounts(b, cache.NewSealed(cache.NewRedis(client, prefix), sealer))
		})
	}
}

func idleAccounts(b *testing.B, store cache.LockingStore) {
	const accounts = 10000
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Access tokens the size of a vendor's JWT.
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": randomText(600), "refresh_token": randomText(48),
			"token_type": "Bearer", "expires_in": 3600})
	}))
	defer token.Close()
	for range b.N {
		tab, err := build(b, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
			"API_TOKEN_URL": token.URL + "/token", "API_CLIENT_ID": "cid", "API_CLIENT_SECRET": "secret",
			"API_REFRESH_TOKEN": "own"}, store)
		if err != nil {
			b.Fatal(err)
		}
		rt, _ := tab.Get("api")
		ctx := context.Background()
		heap0, rss0 := memory()
		for i := range accounts {
			tok := auth.Token{RefreshToken: randomText(48), Expiry: time.Now().Add(-time.Second)}
			if err := rt.Accounts.Add(ctx, fmt.Sprintf("customer-%05d", i), tok); err != nil {
				b.Fatal(err)
			}
		}
		for i := range accounts {
			if _, err := rt.Accounts.Token(proxy.WithAccount(ctx, fmt.Sprintf("customer-%05d", i))); err != nil {
				b.Fatal(err)
			}
		}
		heap1, rss1 := memory()
		held := rt.Accounts.Live()
		for i := range accounts {
			rt.Accounts.drop(fmt.Sprintf("customer-%05d", i))
		}
		heapStore, _ := memory()
		// MiB-held is the keepers this replica holds (all it costs with
		// Redis); MiB-store the accounts' tokens in the in-process store.
		b.ReportMetric(float64(heap1-heapStore)/(1<<20), "MiB-held")
		b.ReportMetric(float64(heapStore-heap0)/(1<<20), "MiB-store")
		b.ReportMetric(float64(rss1-rss0)/(1<<20), "MiB-RSS")
		b.ReportMetric(float64(held), "held")
		runtime.KeepAlive(tab)
	}
}

func randomText(n int) string {
	b := make([]byte, n*3/4)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// memory is the live heap after a collection, and the process's RSS once
// freed memory went back to the system (as the scavenger does in a few
// minutes of idleness).
func memory() (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return m.HeapAlloc, rss
}
