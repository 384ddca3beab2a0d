package app

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

// callAs is one call through a sidecar for account (empty: the route's
// own): the status and the body.
func callAs(url, account string) (int, string, error) {
	req, _ := http.NewRequest("GET", url+"/api/x", nil)
	if account != "" {
		req.Header.Set("X-Authsidecar-Account", account)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// Two accounts against a real OAuth2 server (fosite): each gets its own
// user's tokens and never the other's; a 401 on one refreshes and replays
// that one alone (fosite rotates its refresh token); the route's own
// account is untouched.
func TestAccountsAgainstFosite(t *testing.T) {
	v := newFositeVendor(t, "owner", "alice", "bob")
	clock := fakeclock.New(time.Now())
	a, side := sidecar(t, v.env(t, "owner"), clock)
	for _, user := range []string{"alice", "bob"} {
		if err := a.AddAccount(context.Background(), "api", user, v.refreshTokenFor(t, user), false); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(account, subject string) {
		t.Helper()
		if status, body, err := callAs(side, account); err != nil || status != 200 || body != "ok "+subject {
			t.Fatalf("as %q: %d %q %v, want ok %s", account, status, body, err, subject)
		}
	}
	expect("alice", "alice")
	expect("bob", "bob")
	expect("", "owner")
	bobs := v.lastToken("bob")

	v.expire("alice")
	expect("alice", "alice")
	expect("bob", "bob")
	if v.lastToken("bob") != bobs {
		t.Fatal("bob's token changed when alice's expired")
	}
	refreshes, refusals := v.stats()
	if refreshes["alice"] != 2 || refreshes["bob"] != 1 || refreshes["owner"] != 1 || len(refusals) != 0 {
		t.Fatalf("refreshes %v, refusals %v", refreshes, refusals)
	}
}

// Rotation per account across a fleet: three replicas on a real
// redis-server call three accounts at once while the vendor (fosite, which
// revokes a family when a refresh token is presented twice) expires their
// tokens round after round. Each expiry costs one refresh fleet-wide per
// account, no refresh token is presented twice, and no call fails.
func TestAccountsRotateAcrossReplicasOnRedis(t *testing.T) {
	rs := startRedis(t)
	users := []string{"alice", "bob", "carol"}
	v := newFositeVendor(t, append([]string{"owner"}, users...)...)
	clock := fakeclock.New(time.Now())
	env := v.env(t, "owner")
	env["REDIS_URL"], env["TOKEN_ENCRYPTION_KEY"] = "redis://"+rs.addr(), testKey
	var replicas []string
	for i := range 3 {
		a, url := sidecar(t, env, clock)
		replicas = append(replicas, url)
		if i == 0 {
			for _, u := range users {
				if err := a.AddAccount(context.Background(), "api", u, v.refreshTokenFor(t, u), false); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	const rounds = 5
	for round := range rounds {
		if round > 0 {
			v.expire(users...)
			// Past the keeper's bound on forced refreshes (one per 5 s).
			clock.Advance(6 * time.Second)
		}
		var wg sync.WaitGroup
		errs := make(chan string, 3*12*4)
		for r, url := range replicas {
			for g := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 4 {
						user := users[(r+g+i)%len(users)]
						if status, body, err := callAs(url, user); err != nil || status != 200 || body != "ok "+user {
							errs <- fmt.Sprintf("round %d, replica %d, as %s: %d %q %v", round, r, user, status, body, err)
						}
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
	refreshes, refusals := v.stats()
	if len(refusals) != 0 {
		t.Fatalf("the vendor refused token requests (a refresh token presented twice revokes its family): %v", refusals)
	}
	for _, u := range users {
		if refreshes[u] != rounds {
			t.Errorf("%s was refreshed %d times, want %d (its import, then once per expiry)", u, refreshes[u], rounds)
		}
	}
	if refreshes["owner"] != 0 {
		t.Errorf("the route's own account was refreshed %d times; no call used it", refreshes["owner"])
	}
}

// A thousand accounts on one route, called at once (a few calls each):
// each account's token is fetched once. The vendor's refresh tokens are
// single-use, so a second fetch would also have failed a call.
func TestThousandAccountsEachFetchedOnce(t *testing.T) {
	clock := fakeclock.New(time.Now())
	vendor, upstream := newCredVendor(t, clock)
	const n = 1000
	valid := []string{"s", "seed-own"}
	for i := range n {
		valid = append(valid, fmt.Sprintf("seed-acct-%d", i))
	}
	vendor.configure("refresh_token", basicClient, nil, valid...)
	a, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": upstream, "API_TOKEN_URL": vendor.tokenURL,
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET": "s", "API_REFRESH_TOKEN": "seed-own"}, clock)
	for i := range n {
		if err := a.AddAccount(context.Background(), "api", fmt.Sprintf("acct-%d", i), fmt.Sprintf("seed-acct-%d", i), false); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 3*n)
	start := make(chan struct{})
	for i := range 3 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			acct := fmt.Sprintf("acct-%d", i%n)
			if status, body, err := callAs(side, acct); err != nil || status != 200 || body != "ok seed-"+acct {
				errs <- fmt.Sprintf("as %s: %d %q %v", acct, status, body, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for e := range errs {
		if failed++; failed <= 5 {
			t.Error(e)
		}
	}
	if got := vendor.tokenRequests(); got != n {
		vendor.mu.Lock()
		t.Errorf("%d token requests for %d accounts; refused: %v", got, n, strings.Join(vendor.refused[:min(5, len(vendor.refused))], "; "))
		vendor.mu.Unlock()
	}
}

// An account removed by the operator's command — a process of its own,
// serving nothing — stops at once on every replica of the fleet, though each
// holds its token in memory and the vendor still honours it (no revocation
// endpoint); the other accounts go on. A replica whose subscription was cut
// when a removal was announced looks the account up again before serving it.
func TestRemovedAccountStopsOnEveryReplica(t *testing.T) {
	rs := startRedis(t)
	v := newFositeVendor(t, "owner", "alice", "bob", "carol")
	env := v.env(t, "owner")
	env["REDIS_URL"], env["TOKEN_ENCRYPTION_KEY"] = "redis://"+rs.addr(), testKey
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	link := newTCPLink(t, rs.addr())
	replicaEnv := maps.Clone(env)
	replicaEnv["REDIS_URL"] = "redis://" + link.addr()
	var replicas []string
	for range 2 {
		a, url := sidecar(t, replicaEnv, nil)
		go a.listenToFleet(ctx)
		replicas = append(replicas, url)
	}
	operator, _ := sidecar(t, env, nil)
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := operator.AddAccount(ctx, "api", u, v.refreshTokenFor(t, u), false); err != nil {
			t.Fatal(err)
		}
	}
	serves := func(url, user string) {
		t.Helper()
		if status, body, err := callAs(url, user); err != nil || status != 200 || body != "ok "+user {
			t.Fatalf("as %s: %d %q %v", user, status, body, err)
		}
	}
	stops := func(url, user string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			status, body, err := callAs(url, user)
			if err == nil && status == http.StatusNotFound && strings.Contains(body, "unknown_account") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still served after its removal: %d %q %v", user, status, body, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // the subscriptions are made
	for _, url := range replicas {
		serves(url, "alice")
		serves(url, "bob")
		serves(url, "carol")
	}

	if revoked, err := operator.RevokeAccount(ctx, "api", "alice"); err != nil || revoked {
		t.Fatalf("removing alice: revoked %v, %v", revoked, err)
	}
	for _, url := range replicas {
		stops(url, "alice")
		serves(url, "bob")
	}

	// A network blip between the replicas and Redis: bob is removed while
	// they are cut off, and heard of by none; they reconnect after it.
	link.cut()
	if revoked, err := operator.RevokeAccount(ctx, "api", "bob"); err != nil || revoked {
		t.Fatalf("removing bob: revoked %v, %v", revoked, err)
	}
	for _, url := range replicas {
		serves(url, "bob") // not heard: served from memory, as before
	}
	link.restore()
	for _, url := range replicas {
		stops(url, "bob")
		serves(url, "carol")
	}
	if _, refusals := v.stats(); len(refusals) != 0 {
		t.Fatalf("the vendor refused token requests: %v", refusals)
	}
}

// tcpLink forwards connections to a server until cut: then it closes every
// connection and refuses new ones until restored.
type tcpLink struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newTCPLink(t *testing.T, target string) *tcpLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &tcpLink{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); l.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.forward(c)
		}
	}()
	return l
}

func (l *tcpLink) addr() string { return l.ln.Addr().String() }

func (l *tcpLink) forward(c net.Conn) {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		c.Close()
		return
	}
	s, err := net.Dial("tcp", l.target)
	if err != nil {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.conns = append(l.conns, c, s)
	l.mu.Unlock()
	go func() { io.Copy(s, c); s.Close() }()
	io.Copy(c, s)
	c.Close()
}

func (l *tcpLink) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

func (l *tcpLink) restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = false
}
