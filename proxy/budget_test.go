package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/auth"
)

// rotatingStatic hands out tok-1, tok-2, … one per fetch.
type rotatingStatic struct{ n atomic.Int32 }

func (g *rotatingStatic) Fetch(context.Context, auth.Token) (auth.Token, error) {
	return auth.Token{AccessToken: fmt.Sprintf("tok-%d", g.n.Add(1))}, nil
}

// Regression: 200 concurrent 1 MiB uploads held 295 MB of replay buffers.
// Past a global budget, bodies stream and are not replayed.
func TestReplayBuffersStayWithinTheBudget(t *testing.T) {
	const callers, body = 10, 1 << 20
	var arrived sync.WaitGroup
	arrived.Add(callers)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			// Every first attempt is held until all have arrived, so
			// their kept bodies are all held at once, then refused.
			arrived.Done()
			select {
			case <-all:
			case <-time.After(10 * time.Second):
			}
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	keeper := newKeeper("vendor", &rotatingStatic{}, time.Second, nil, 0)
	h := newHandler(t, []Route{{Name: "vendor", Upstream: u, Tokens: keeperTokens{keeper}}},
		EngineOptions{MaxReplayBytes: body, ReplayBudgetBytes: 4 * (body + 1)}, Options{})
	side := httptest.NewServer(h)
	defer side.Close()

	var wg sync.WaitGroup
	var replayed, refused atomic.Int32
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(side.URL+"/vendor/upload", "application/octet-stream", bytes.NewReader(make([]byte, body)))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				replayed.Add(1)
			case http.StatusUnauthorized:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if replayed.Load() > 4 || replayed.Load()+refused.Load() != callers {
		t.Fatalf("%d replayed, %d passed on the 401: at most 4 bodies fit the budget", replayed.Load(), refused.Load())
	}
}
