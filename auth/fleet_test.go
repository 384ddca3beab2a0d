package auth

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/authsidecar/authsidecar/internal/oauthtest"
)

const fleetSecret = "fleet-client-secret"

var fleetKey = bytes.Repeat([]byte{7}, cache.KeySize)

// replica is one sidecar's keeper with its own connection to the shared
// Redis, as a pod of a Deployment has.
func replica(t *testing.T, mr *miniredis.Miniredis, clock *fakeclock.Clock, grant Grant) *Keeper {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	sealer, err := cache.NewSealer(fleetKey)
	if err != nil {
		t.Fatal(err)
	}
	return newKeeper("fleet", grant, keeperOptions{Clock: clock.Now, Timeout: 5 * time.Second,
		Store: cache.NewSealed(cache.NewRedis(client, "authsidecar:"), sealer), Key: "token:fleet:abc"})
}

// sealedOn is the store a replica sees, for reading what the fleet stored.
func sealedOn(t *testing.T, mr *miniredis.Miniredis) cache.Store {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	sealer, err := cache.NewSealer(fleetKey)
	if err != nil {
		t.Fatal(err)
	}
	return cache.NewSealed(cache.NewRedis(client, "authsidecar:"), sealer)
}

func rotatingVendor(t *testing.T, clock *fakeclock.Clock) (*oauthtest.Server, func() Grant) {
	srv := oauthtest.New(t, oauthtest.Config{
		ClientID: "fleet-client", ClientSecret: fleetSecret, BasicAuth: true, Grants: []string{"refresh_token"},
		InitialRefreshToken: "rt-initial-secret", Rotate: true, Lifetime: time.Minute, Now: clock.Now,
	})
	return srv, func() Grant {
		return &OAuth2Grant{Type: GrantRefreshToken, TokenURL: srv.TokenURL(), RefreshToken: "rt-initial-secret",
			Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "fleet-client", Secret: fleetSecret}, Client: http.DefaultClient, Clock: clock.Now}}
	}
}

// Three replicas, 200 concurrent callers, several expiries, a vendor whose
// refresh tokens are single-use: one refresh per expiry for the whole
// fleet, no refresh token presented twice, no failed call.
func TestFleetRefreshesOncePerExpiry(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	vendor, grant := rotatingVendor(t, clock)
	replicas := []*Keeper{replica(t, mr, clock, grant()), replica(t, mr, clock, grant()), replica(t, mr, clock, grant())}

	const expiries, callers = 4, 200
	for wave := 1; wave <= expiries; wave++ {
		var wg sync.WaitGroup
		var failed atomic.Int32
		tokens := sync.Map{}
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := replicas[i%len(replicas)].Token(context.Background())
				if err != nil {
					failed.Add(1)
					t.Errorf("wave %d: %v", wave, err)
					return
				}
				tokens.Store(tok.AccessToken, true)
			}()
		}
		wg.Wait()
		distinct := 0
		tokens.Range(func(any, any) bool { distinct++; return true })
		if n := vendor.TokenCalls("refresh_token"); n != wave || failed.Load() != 0 || distinct != 1 {
			t.Fatalf("wave %d: %d refreshes in all (want %d), %d failed calls, %d distinct tokens", wave, n, wave, failed.Load(), distinct)
		}
		clock.Advance(2 * time.Minute) // every token expires
	}
	if n := vendor.InvalidGrants(); n != 0 {
		t.Fatalf("%d invalid_grant answers: a refresh token was presented twice (%v)", n, vendor.BadRequests())
	}

	// Nothing in Redis — key names or values — holds a secret in clear.
	secrets := append(vendor.IssuedSecrets(), fleetSecret, "rt-initial-secret")
	keys := mr.Keys()
	if len(keys) == 0 {
		t.Fatal("nothing was stored in Redis")
	}
	for _, k := range keys {
		v, _ := mr.Get(k)
		for _, s := range secrets {
			if strings.Contains(k, s) || strings.Contains(v, s) {
				t.Fatalf("Redis key %q holds a secret in clear", k)
			}
		}
	}
}

// A replica whose token the vendor refused adopts the newer token a sibling
// stored instead of refreshing over it (compare-and-invalidate, fleet-wide).
func TestFleetAdoptsSiblingsTokenAfter401(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	vendor, grant := rotatingVendor(t, clock)
	a, b := replica(t, mr, clock, grant()), replica(t, mr, clock, grant())

	old := mustToken(t, a)
	if mustToken(t, b).AccessToken != old.AccessToken {
		t.Fatal("b did not take a's token from the store")
	}
	a.Invalidate(old.AccessToken) // a got 401 and refreshed
	fresh := mustToken(t, a)
	b.Invalidate(old.AccessToken) // b gets its own 401 for the old token
	if got := mustToken(t, b); got.AccessToken != fresh.AccessToken {
		t.Fatal("b refreshed over a's newer token")
	}
	if n := vendor.TokenCalls("refresh_token"); n != 2 {
		t.Fatalf("%d refreshes, want 2", n)
	}
}

// Redis stops under load: calls keep being served from memory while the
// token is valid; a grant that cannot rotate still refreshes, one that can
// does not; when Redis is back, writes resume without a restart.
func TestFleetSurvivesRedisOutage(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	ccVendor := oauthtest.New(t, oauthtest.Config{ClientID: "cc", ClientSecret: "cs", BasicAuth: true,
		Grants: []string{"client_credentials"}, Lifetime: time.Hour, Now: clock.Now})
	cc := replica(t, mr, clock, &OAuth2Grant{Type: GrantClientCredentials, TokenURL: ccVendor.TokenURL(),
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "cc", Secret: "cs"}, Client: http.DefaultClient, Clock: clock.Now}})
	_, rotGrant := rotatingVendor(t, clock)
	rot := replica(t, mr, clock, rotGrant())
	mustToken(t, cc)
	mustToken(t, rot)

	// Load, during which Redis goes away.
	var failed, served atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, k := range []*Keeper{cc, rot} {
					if _, err := k.Token(context.Background()); err != nil {
						failed.Add(1)
					} else {
						served.Add(1)
					}
				}
			}
		}()
	}
	// Calls are served before Redis goes, and go on being served after.
	waitFor(t, "calls with Redis up", func() bool { return served.Load() > 100 })
	mr.Close()
	before := served.Load()
	waitFor(t, "calls with Redis down", func() bool { return served.Load() > before+1000 })
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || served.Load() == 0 {
		t.Fatalf("with Redis down and tokens valid: %d failed, %d served", failed.Load(), served.Load())
	}

	// The tokens expire while Redis is down.
	clock.Advance(2 * time.Hour)
	fresh, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client credentials could not refresh without Redis: %v", err)
	}
	if st := cc.Status(); st.StoreError == "" {
		t.Error("the keeper does not report the store as failing")
	}
	if _, err := rot.Token(context.Background()); err == nil || KindOf(err) != Unavailable || !strings.Contains(err.Error(), "rotate") {
		t.Fatalf("a rotating grant refreshed without the lock: %v", err)
	}

	// Redis is back: the token refreshed meanwhile is written through.
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := cc.Resync(context.Background()); err != nil {
		t.Fatalf("writing through after Redis came back: %v", err)
	}
	if stored := storedToken(t, sealedOn(t, mr), "token:fleet:abc"); stored.AccessToken != fresh.AccessToken {
		t.Fatalf("store after recovery holds %v, want the token refreshed during the outage", stored)
	}
	if st := cc.Status(); st.StoreError != "" {
		t.Errorf("store still reported failing: %s", st.StoreError)
	}
}

// A token sealed with a key no longer configured is as good as absent: the
// route gets a new one instead of failing as if the store were down.
func TestKeeperTreatsUnopenableTokenAsAbsent(t *testing.T) {
	clock := fakeclock.New(time.Now())
	vendor := oauthtest.New(t, oauthtest.Config{ClientID: "cc", ClientSecret: "cs", BasicAuth: true,
		Grants: []string{"client_credentials"}, Now: clock.Now})
	grant := &OAuth2Grant{Type: GrantClientCredentials, TokenURL: vendor.TokenURL(),
		Endpoint: &Endpoint{Auth: ClientSecretBasic{ID: "cc", Secret: "cs"}, Client: http.DefaultClient, Clock: clock.Now}}
	shared := cache.NewMemory()
	keeperWith := func(key byte) *Keeper {
		sealer, _ := cache.NewSealer(bytes.Repeat([]byte{key}, cache.KeySize))
		return newKeeper("r", grant, keeperOptions{Clock: clock.Now, Store: cache.NewSealed(shared, sealer), Key: "token:r"})
	}
	mustToken(t, keeperWith(1))
	if _, err := keeperWith(2).Token(context.Background()); err != nil {
		t.Fatalf("a token sealed with a lost key stopped the route: %v", err)
	}
	if n := vendor.TokenCalls("client_credentials"); n != 2 {
		t.Fatalf("%d token calls, want 2", n)
	}
}

// In steady state a request costs no Redis round trip: the token is served
// from memory.
func TestKeeperSteadyStateCostsNoRedisRoundTrip(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	_, grant := rotatingVendor(t, clock)
	k := replica(t, mr, clock, grant())
	mustToken(t, k)
	before := mr.CommandCount()
	for range 1000 {
		mustToken(t, k)
	}
	if n := mr.CommandCount() - before; n != 0 {
		t.Fatalf("1000 token lookups cost %d Redis commands, want 0", n)
	}
}

// Regression: after Redis lost its data, a replica that found the token
// gone refreshed with the refresh token in its own memory, which a sibling
// had already rotated away: the vendor revoked the whole family. Now the
// replica writes its token back, waits while the fleet does the same (the
// newest wins), and refreshes from the newest refresh token held.
func TestFleetConvergesOnNewestRefreshTokenAfterDataLoss(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	vendor, grant := rotatingVendor(t, clock)
	recoveryOf := func() *Recovery { return NewRecovery(3*time.Second, clock.Now) }
	a := replicaWith(t, mr, clock, grant(), recoveryOf())
	b := replicaWith(t, mr, clock, grant(), recoveryOf())

	mustToken(t, a)
	mustToken(t, b) // b adopts a's token
	clock.Advance(2 * time.Minute)
	newest := mustToken(t, b) // b rotates the refresh token; a holds the old one
	mr.FlushAll()             // Redis restarts without persistence
	clock.Advance(2 * time.Minute)

	got := make(chan Token, 1)
	go func() {
		tok, err := a.Token(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- tok
	}()
	// a writes its token back and waits; b notices the loss in time and
	// writes back its newer one.
	waitFor(t, "a's write-back", func() bool { return len(mr.Keys()) > 0 })
	if err := b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(4 * time.Second) // the settling window closes
	tok := <-got
	if n := vendor.InvalidGrants(); n != 0 {
		t.Fatalf("a refresh token was presented twice after the data loss: %v", vendor.BadRequests())
	}
	if tok.AccessToken == "" || tok.AccessToken == newest.AccessToken {
		t.Fatalf("a did not refresh from the newest refresh token: %v", tok)
	}
}

func replicaWith(t *testing.T, mr *miniredis.Miniredis, clock *fakeclock.Clock, grant Grant, recovery *Recovery) *Keeper {
	return replicaLocking(t, mr, clock, grant, recovery, 0)
}

func replicaLocking(t *testing.T, mr *miniredis.Miniredis, clock *fakeclock.Clock, grant Grant, recovery *Recovery, lockTTL time.Duration) *Keeper {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	sealer, err := cache.NewSealer(fleetKey)
	if err != nil {
		t.Fatal(err)
	}
	store := cache.NewSealed(cache.NewRedis(client, "authsidecar:"), sealer)
	fleet := NewFleet(FleetConfig{Route: "fleet", Grant: grant, Store: store, Locker: store, Key: "token:fleet:abc",
		Clock: clock.Now, Recovery: recovery, LockTTL: lockTTL})
	return NewKeeper(KeeperConfig{Route: "fleet", Source: fleet, Clock: clock.Now, Timeout: 5 * time.Second})
}

// Regression: when Redis dropped during a replica's refresh and came back
// seconds later, the rotated refresh token was only in that replica's
// memory, the lock went, and a sibling refreshed with the old one. The
// refreshing replica keeps the lock while it retries the write.
func TestFleetKeepsTheLockUntilARotatedTokenIsWritten(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	vendor, grant := rotatingVendor(t, clock)
	a := replicaLocking(t, mr, clock, grant(), nil, time.Second)
	b := replicaLocking(t, mr, clock, grant(), nil, time.Second)
	mustToken(t, a)
	mustToken(t, b)
	clock.Advance(2 * time.Minute)

	vendor.SetMode(oauthtest.Slow)
	refreshed := make(chan Token, 1)
	go func() { refreshed <- mustToken(t, a) }()
	waitFor(t, "a's refresh to reach the vendor", func() bool { return vendor.HeldCalls() == 1 })
	mr.Close() // Redis drops while a refreshes
	vendor.SetMode(oauthtest.Normal)
	fresh := <-refreshed // a serves its new token; the store did not get it
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}

	got, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := vendor.InvalidGrants(); n != 0 {
		t.Fatalf("b presented a rotated-away refresh token: %v", vendor.BadRequests())
	}
	if got.AccessToken != fresh.AccessToken {
		t.Fatalf("b did not adopt a's token")
	}
}
