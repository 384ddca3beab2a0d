package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/authsidecar/authsidecar/internal/oauthtest"
)

func newClock() *fakeclock.Clock { return fakeclock.New(t0) }

// ccFixture is a keeper doing client credentials against the strict fake,
// both on one fake clock.
func ccFixture(t *testing.T, cfg oauthtest.Config) (*Keeper, *oauthtest.Server, *fakeclock.Clock) {
	k, srv, c, _ := ccFixtureObserved(t, cfg)
	return k, srv, c
}

func ccFixtureObserved(t *testing.T, cfg oauthtest.Config) (*Keeper, *oauthtest.Server, *fakeclock.Clock, *refreshes) {
	t.Helper()
	c := newClock()
	cfg.ClientID, cfg.ClientSecret, cfg.BasicAuth, cfg.Now = "cid", "csecret", true, c.Now
	if cfg.Grants == nil {
		cfg.Grants = []string{"client_credentials"}
	}
	srv := oauthtest.New(t, cfg)
	obs := &refreshes{}
	k := newKeeper("test", obs.wrap(&OAuth2Grant{Type: GrantClientCredentials, TokenURL: srv.TokenURL(),
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "cid", Secret: "csecret"}, Client: http.DefaultClient, Clock: c.Now}}),
		keeperOptions{Timeout: 5 * time.Second, Clock: c.Now, Observer: obs})
	return k, srv, c, obs
}

func mustToken(t *testing.T, k *Keeper) Token {
	t.Helper()
	tok, err := k.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

// waitFor polls cond, bounded; it is for background work to land, not timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestKeeperServesCachedTokenWhileFresh(t *testing.T) {
	k, srv, c, obs := ccFixtureObserved(t, oauthtest.Config{Lifetime: time.Hour})
	first := mustToken(t, k)
	c.Advance(30 * time.Minute)
	if again := mustToken(t, k); again.AccessToken != first.AccessToken {
		t.Fatal("a fresh token was replaced")
	}
	obs.waitIdle(t)
	if n := srv.TokenCalls("client_credentials"); n != 1 {
		t.Fatalf("%d token calls, want 1", n)
	}
}

// A 3-second token is refreshed after half its lifetime, not 60 s before
// expiry (which would be before it was issued).
func TestKeeperRefreshesShortTokensAtHalfLife(t *testing.T) {
	k, srv, c, obs := ccFixtureObserved(t, oauthtest.Config{Lifetime: 3 * time.Second})
	first := mustToken(t, k)
	c.Advance(time.Second)
	if mustToken(t, k).AccessToken != first.AccessToken {
		t.Fatal("token replaced before half its lifetime")
	}
	obs.waitIdle(t)
	if n := srv.TokenCalls("client_credentials"); n != 1 {
		t.Fatalf("refreshed before half the lifetime: %d token calls", n)
	}
	c.Advance(600 * time.Millisecond) // 1.6 s: past half-life, still valid
	if got := mustToken(t, k); got.AccessToken != first.AccessToken {
		t.Fatal("a still-valid token near expiry was not served at once")
	}
	waitFor(t, "background refresh", func() bool { return srv.TokenCalls("client_credentials") == 2 })
	waitFor(t, "new token served", func() bool { return mustToken(t, k).AccessToken != first.AccessToken })
}

func TestKeeperRefreshesSixtySecondsAheadOfLongTokens(t *testing.T) {
	k, srv, c, obs := ccFixtureObserved(t, oauthtest.Config{Lifetime: time.Hour})
	mustToken(t, k)
	c.Advance(time.Hour - 61*time.Second)
	mustToken(t, k)
	obs.waitIdle(t)
	if srv.TokenCalls("client_credentials") != 1 {
		t.Fatal("refreshed more than 60 s ahead")
	}
	c.Advance(2 * time.Second)
	mustToken(t, k)
	waitFor(t, "refresh within the margin", func() bool { return srv.TokenCalls("client_credentials") == 2 })
}

func TestKeeperFiftyCallersOnExpiredTokenCauseOneRefresh(t *testing.T) {
	k, srv, c := ccFixture(t, oauthtest.Config{Lifetime: time.Minute})
	mustToken(t, k)
	c.Advance(2 * time.Minute)
	srv.SetMode(oauthtest.Slow)

	var wg, asking sync.WaitGroup
	tokens := make(chan string, 50)
	for range 50 {
		wg.Add(1)
		asking.Add(1)
		go func() {
			defer wg.Done()
			asking.Done()
			tok, err := k.Token(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			tokens <- tok.AccessToken
		}()
	}
	// The crowd gathers behind the refresh the slow endpoint holds.
	asking.Wait()
	waitFor(t, "the refresh to reach the endpoint", func() bool { return srv.HeldCalls() == 1 })
	srv.SetMode(oauthtest.Normal)
	wg.Wait()
	close(tokens)
	seen := map[string]bool{}
	for tok := range tokens {
		seen[tok] = true
	}
	if n := srv.TokenCalls("client_credentials"); n != 2 {
		t.Fatalf("%d token calls, want 2 (first token and one refresh)", n)
	}
	if len(seen) != 1 {
		t.Fatalf("callers got %d different tokens, want 1", len(seen))
	}
}

func TestKeeperFollowsRotation(t *testing.T) {
	c := newClock()
	srv := oauthtest.New(t, oauthtest.Config{
		ClientID: "cid", ClientSecret: "cs", Grants: []string{"refresh_token"},
		InitialRefreshToken: "rt-configured", Rotate: true, Lifetime: time.Minute, Now: c.Now,
	})
	store := cache.NewMemory()
	k := newKeeper("rot", &OAuth2Grant{Type: GrantRefreshToken, TokenURL: srv.TokenURL(), RefreshToken: "rt-configured",
		Endpoint: &Endpoint{Auth: ClientSecretPost{ID: "cid", Secret: "cs"}, Client: http.DefaultClient, Clock: c.Now}},
		keeperOptions{Store: store, Key: "k", Clock: c.Now})
	var last Token
	for i := range 5 {
		last = mustToken(t, k)
		c.Advance(2 * time.Minute)
		if got := srv.TokenCalls("refresh_token"); got != i+1 {
			t.Fatalf("after %d expiries: %d refreshes", i+1, got)
		}
	}
	if srv.InvalidGrants() != 0 {
		t.Fatalf("a used refresh token was presented again: %v", srv.BadRequests())
	}
	if last.RefreshToken == "rt-configured" {
		t.Fatal("rotated refresh token not kept")
	}
	// The rotated refresh token is what the store holds, for restarts and
	// siblings.
	if stored := storedToken(t, store, "k"); stored.RefreshToken != last.RefreshToken {
		t.Fatalf("stored refresh token %v, want the latest", stored)
	}
}

func TestKeeperInvalidateIsCompareAndInvalidate(t *testing.T) {
	k, srv, _ := ccFixture(t, oauthtest.Config{})
	a := mustToken(t, k)
	k.Invalidate("some-older-token")
	if mustToken(t, k).AccessToken != a.AccessToken {
		t.Fatal("invalidating another token dropped the current one")
	}
	k.Invalidate(a.AccessToken)
	b := mustToken(t, k)
	if b.AccessToken == a.AccessToken || srv.TokenCalls("client_credentials") != 2 {
		t.Fatal("the refused token was served again")
	}
	k.Invalidate(a.AccessToken) // a late report about the old token
	if mustToken(t, k).AccessToken != b.AccessToken {
		t.Fatal("a late invalidation of an old token dropped the new one")
	}
}

// A crowd of callers facing a dead token endpoint costs it one call per
// back-off period, and each caller gets an answer at once.
func TestKeeperBacksOffAfterFailure(t *testing.T) {
	var hits atomic.Int32
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer down.Close()
	c := newClock()
	k := newKeeper("down", &OAuth2Grant{Type: GrantClientCredentials, TokenURL: down.URL,
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "a", Secret: "b"}, Client: http.DefaultClient}},
		keeperOptions{Clock: c.Now, MinBackoff: time.Second, MaxBackoff: 8 * time.Second})

	for range 20 {
		_, err := k.Token(context.Background())
		var fe *FetchError
		if !errors.As(err, &fe) || fe.Kind != Unavailable || fe.RetryAfter.IsZero() {
			t.Fatalf("err = %v, want an Unavailable FetchError with RetryAfter", err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("token endpoint called %d times during back-off, want 1", n)
	}
	c.Advance(time.Second)
	k.Token(context.Background())
	if n := hits.Load(); n != 2 {
		t.Fatalf("no retry after the back-off: %d calls", n)
	}
}

func TestKeeperTimesOutSlowEndpoint(t *testing.T) {
	c := newClock()
	srv := oauthtest.New(t, oauthtest.Config{ClientID: "cid", ClientSecret: "cs", BasicAuth: true, Grants: []string{"client_credentials"}, Now: c.Now})
	srv.SetMode(oauthtest.Slow)
	k := newKeeper("slow", &OAuth2Grant{Type: GrantClientCredentials, TokenURL: srv.TokenURL(),
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "cid", Secret: "cs"}, Client: http.DefaultClient}},
		keeperOptions{Timeout: 100 * time.Millisecond})
	_, err := k.Token(context.Background())
	if KindOf(err) != Unavailable || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v, want an Unavailable timeout", err)
	}
}

func TestKeeperWaiterLeavesWhenItsContextEnds(t *testing.T) {
	k, srv, _ := ccFixture(t, oauthtest.Config{})
	srv.SetMode(oauthtest.Slow)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestKeeperAdoptsTokenStoredBySomeoneElse(t *testing.T) {
	k, srv, _ := ccFixture(t, oauthtest.Config{})
	if err := k.Store(context.Background(), Token{AccessToken: "from-consent", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	if got := mustToken(t, k); got.AccessToken != "from-consent" {
		t.Fatalf("token = %v, want the stored one", got)
	}
	if srv.TokenCalls("client_credentials") != 0 {
		t.Fatal("fetched a token while one was stored")
	}
}

type failingGrant struct{}

func (failingGrant) Fetch(context.Context, Token) (Token, error) {
	return Token{}, &RetrieveError{StatusCode: http.StatusServiceUnavailable}
}

// Regression: the failure count was read for the log line after the lock
// was released, racing with the next refresh. Under -race this failed.
func TestKeeperFailingRefreshesDoNotRace(t *testing.T) {
	k := newKeeper("failing", failingGrant{}, keeperOptions{MinBackoff: time.Nanosecond, MaxBackoff: time.Nanosecond})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, err := k.Token(context.Background()); err == nil {
					t.Error("a grant that always fails gave a token")
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := k.Status(); st.LastError == "" {
		t.Fatal("the failure is not reported")
	}
}

// Regression: tokens were refreshed only when a call came, so an idle
// route's next call waited for the vendor and its expiry metric went stale.
// KeepWarm refreshes ahead of expiry with no call at all.
func TestKeeperKeepsAnIdleRouteWarm(t *testing.T) {
	k, srv, c := ccFixture(t, oauthtest.Config{Lifetime: time.Hour})
	first := mustToken(t, k)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go k.KeepWarm(ctx, time.Millisecond)

	c.Advance(30 * time.Minute) // not due yet
	if n := srv.TokenCalls("client_credentials"); n != 1 {
		t.Fatalf("refreshed %d times before due", n-1)
	}
	c.Advance(30*time.Minute - 30*time.Second) // within the margin
	waitFor(t, "a refresh with no call", func() bool { return srv.TokenCalls("client_credentials") == 2 })
	// The endpoint counts the request before the keeper holds its answer.
	waitFor(t, "the refreshed token held", func() bool { return k.Status().Expiry.After(first.Expiry) })
	if st := k.Status(); !st.HasToken {
		t.Fatalf("after warming: %+v", st)
	}
}
