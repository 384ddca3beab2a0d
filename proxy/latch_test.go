package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/auth"
)

// countingGrant counts how often the keeper asks its grant for a token.
type countingGrant struct {
	auth.Grant
	fetches atomic.Int32
}

func (g *countingGrant) Fetch(ctx context.Context, prev auth.Token) (auth.Token, error) {
	g.fetches.Add(1)
	return g.Grant.Fetch(ctx, prev)
}

// Regression: one 401 for a static token latched the route into refreshing
// on every call from then on (15,219 refreshes in 5 s). The refused static
// token is still served, and the route recovers.
func TestOne401DoesNotLatchAStaticToken(t *testing.T) {
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusUnauthorized) // one hiccup at the vendor
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	grant := &countingGrant{Grant: auth.StaticGrant{AccessToken: "static-pat"}}
	keeper := newKeeper("vendor", grant, time.Second, nil, 0)
	side := httptest.NewServer(newHandler(t, []Route{{Name: "vendor", Upstream: u, Tokens: keeperTokens{keeper}}}, EngineOptions{MaxReplayBytes: 1 << 20}, Options{}))
	defer side.Close()

	for i := range 200 {
		resp, err := http.Get(side.URL + "/vendor/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if i > 0 && resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d; the route did not recover after one 401", i, resp.StatusCode)
		}
	}
	if n := grant.fetches.Load(); n > 2 {
		t.Fatalf("the static token was fetched %d times after one 401, want at most 2", n)
	}
	if st := keeper.Status(); !st.HasToken || st.LastError != "" {
		t.Fatalf("keeper status after recovery: %+v", st)
	}
}

// Regression: an upstream path that always answers 401 cost one token
// request per call (4,433 for 36,866 calls). Any caller can find such a
// path; forced refreshes are bounded per route.
func TestAlways401PathCostsBoundedRefreshes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.vendor.SetAPI401(true)
	for range 100 {
		resp, _ := f.do(t, "GET", "/vendor/always-401", nil, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want the vendor's 401", resp.StatusCode)
		}
	}
	if n := f.vendor.TokenCalls("client_credentials"); n > 3 {
		t.Fatalf("100 calls to an always-401 path cost %d token requests, want at most 3", n)
	}
}
