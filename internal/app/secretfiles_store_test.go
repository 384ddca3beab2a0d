package app

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/authsidecar/authsidecar/internal/emulators"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/authsidecar/authsidecar/internal/filestamp"
)

const otherTestKey = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

// A new REDIS_URL in its file moves the store without a restart and without
// a new token: the sidecar's token is written to the new server, where the
// next replica finds it. A new server that does not answer is not used.
func TestRedisURLFileMovesTheStore(t *testing.T) {
	from, to := miniredis.RunT(t), miniredis.RunT(t)
	vendor := &secretVendor{secrets: map[string]bool{"s": true}, tokens: map[string]bool{}}
	url := serve(t, vendor)
	vol := newSecretVolume(t, map[string]string{"REDIS_URL": "redis://" + from.Addr()})
	env := map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": url, "API_TOKEN_URL": url + "/token",
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET": "s",
		"REDIS_URL_FILE": vol.path("REDIS_URL"), "TOKEN_ENCRYPTION_KEY": testKey}
	clock := fakeclock.New(time.Now())
	a, side := sidecar(t, env, clock)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.watchSecretFiles(ctx, 10*time.Millisecond)
	go a.watchStore(ctx, 10*time.Millisecond)
	if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("first call: %d", got.status)
	}

	// A server that does not answer: the old one stays, /readyz says why.
	vol.update(map[string]string{"REDIS_URL": "redis://127.0.0.1:1"})
	waitFor(t, "the unusable REDIS_URL_FILE on /readyz", func() bool {
		_, has := readyz(t, side)["secret_files"]
		return has
	})
	if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("call with the old server: %d", got.status)
	}

	vol.update(map[string]string{"REDIS_URL": "redis://" + to.Addr()})
	waitFor(t, "the token written to the new server", func() bool { return len(to.Keys()) >= 2 }) // marker + token
	if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("call after the move: %d", got.status)
	}
	// A replica started on the new server uses the same token.
	env["REDIS_URL"], env["REDIS_URL_FILE"] = "redis://"+to.Addr(), ""
	_, second := sidecar(t, env, clock)
	if got := call(t, "GET", second+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("second replica: %d", got.status)
	}
	vendor.mu.Lock()
	defer vendor.mu.Unlock()
	if n := len(vendor.seen); n != 1 {
		t.Fatalf("%d token requests; the move should have kept the one token", n)
	}
}

// A new TOKEN_ENCRYPTION_KEY_PREVIOUS in its file opens what the previous
// key sealed, without a restart: a replica that rotated its key reads the
// token the rest of the fleet sealed with the old one.
func TestPreviousKeyFileOpensFromTheNextRead(t *testing.T) {
	mr := miniredis.RunT(t)
	vendor := &secretVendor{secrets: map[string]bool{"s": true}, tokens: map[string]bool{}}
	url := serve(t, vendor)
	env := map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": url, "API_TOKEN_URL": url + "/token",
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET": "s", "REDIS_URL": "redis://" + mr.Addr(), "TOKEN_ENCRYPTION_KEY": testKey}
	clock := fakeclock.New(time.Now())
	_, first := sidecar(t, env, clock)
	if got := call(t, "GET", first+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("first replica: %d", got.status)
	}

	// The second replica seals with a new key; its previous key is at first
	// an unrelated one, then the fleet's old key.
	vol := newSecretVolume(t, map[string]string{"KEY": otherTestKey, "PREVIOUS": otherTestKey})
	env["TOKEN_ENCRYPTION_KEY"] = ""
	env["TOKEN_ENCRYPTION_KEY_FILE"], env["TOKEN_ENCRYPTION_KEY_PREVIOUS_FILE"] = vol.path("KEY"), vol.path("PREVIOUS")
	second, secondURL := sidecar(t, env, clock)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go second.watchSecretFiles(ctx, 10*time.Millisecond)
	vol.update(map[string]string{"KEY": otherTestKey, "PREVIOUS": testKey})
	waitFor(t, "the new previous key in use", func() bool {
		second.files.mu.Lock()
		defer second.files.mu.Unlock()
		stamp, _ := filestamp.Of(vol.path("PREVIOUS"))
		return second.files.stamps["TOKEN_ENCRYPTION_KEY_PREVIOUS"] == stamp
	})
	if got := call(t, "GET", secondURL+"/api/x", nil, nil); got.status != 200 {
		t.Fatalf("second replica: %d", got.status)
	}
	vendor.mu.Lock()
	defer vendor.mu.Unlock()
	if n := len(vendor.seen); n != 1 {
		t.Fatalf("%d token requests; the second replica should have opened the first one's token", n)
	}
}

// The sidecar's own secret files apply without a restart: a new
// CLIENT_KEYS and ADMIN_TOKEN from the next call (the old ones refused), a
// new TOKEN_ENCRYPTION_KEY seals from then on — a replica that knows only the
// new key opens what is written after the swap. (That the old key still
// opens what it sealed is cache.TestSealerRotateAndAccept.)
func TestSidecarSecretFilesApplyToTheNextCall(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := fakeclock.New(time.Now())
	o := vendorOptions(clock)
	o.AccessLifetime = time.Hour
	veem := emulators.NewVeem(o)
	veemURL := serve(t, veem)
	vol := newSecretVolume(t, map[string]string{"keys": "caller-key-one-0123456789", "admin": "admin-token-one-0123456789", "seal": testKey})
	env := map[string]string{
		"ROUTES": "veem", "VEEM_UPSTREAM_URL": veemURL, "VEEM_CLIENT_ID": demoClientID, "VEEM_CLIENT_SECRET": demoClientSecret,
		"VEEM_REDIRECT_URL": "http://127.0.0.1:1/oauth/veem/callback", "VEEM_GRANT": "client_credentials",
		"REDIS_URL": "redis://" + mr.Addr(), "TOKEN_ENCRYPTION_KEY_FILE": vol.path("seal"),
		"CLIENT_KEYS_FILE": vol.path("keys"), "ADMIN_TOKEN_FILE": vol.path("admin"),
	}
	a, side := sidecar(t, env, clock)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.watchSecretFiles(ctx, 10*time.Millisecond)

	withKey := func(key string) int {
		return call(t, "GET", side+"/veem/veem/v1.0/hello", nil, http.Header{"X-Authsidecar-Key": {key}}).status
	}
	startConsent := func(admin string) int {
		req, _ := http.NewRequest("GET", side+"/oauth/veem/start", nil)
		req.Header.Set("X-Authsidecar-Admin-Token", admin)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if k, c := withKey("caller-key-one-0123456789"), startConsent("admin-token-one-0123456789"); k != 200 || c != http.StatusFound {
		t.Fatalf("the first key or admin token was refused: %d, %d", k, c)
	}

	vol.update(map[string]string{"keys": "caller-key-two-0123456789", "admin": "admin-token-two-0123456789", "seal": otherTestKey})
	waitFor(t, "the new client key", func() bool { return withKey("caller-key-two-0123456789") == 200 })
	if got := withKey("caller-key-one-0123456789"); got != http.StatusUnauthorized {
		t.Fatalf("the retired client key: %d", got)
	}
	if startConsent("admin-token-one-0123456789") != http.StatusUnauthorized || startConsent("admin-token-two-0123456789") != http.StatusFound {
		t.Fatal("the admin token did not follow its file")
	}
	// An admin token short enough to guess is refused, as at start-up; the
	// one in use stays.
	vol.update(map[string]string{"keys": "caller-key-two-0123456789", "admin": "admin", "seal": otherTestKey})
	waitFor(t, "the short admin token refused", func() bool {
		return strings.Contains(string(call(t, "GET", side+"/metrics", nil, nil).body),
			`authsidecar_secret_file_errors_total{variable="ADMIN_TOKEN_FILE"} 1`)
	})
	if startConsent("admin") != http.StatusUnauthorized || startConsent("admin-token-two-0123456789") != http.StatusFound {
		t.Fatal("a short admin token replaced the one in use")
	}

	// A token written now is sealed with the new key: a replica that knows
	// only that key uses it without asking the vendor.
	clock.Advance(2 * time.Hour)
	if withKey("caller-key-two-0123456789") != 200 {
		t.Fatal("refresh after the key swap failed")
	}
	total := func() (n int) {
		for _, c := range veem.Stats().TokenRequests {
			n += c
		}
		return n
	}
	before := total()
	env2 := maps.Clone(env)
	delete(env2, "TOKEN_ENCRYPTION_KEY_FILE")
	delete(env2, "CLIENT_KEYS_FILE")
	delete(env2, "ADMIN_TOKEN_FILE") // holds the refused short token now
	env2["TOKEN_ENCRYPTION_KEY"] = otherTestKey
	_, second := sidecar(t, env2, clock)
	call(t, "GET", second+"/veem/veem/v1.0/hello", nil, nil).echo(t)
	if after := total(); after != before {
		t.Fatalf("the replica with the new key asked for a token (%d -> %d): it could not open the stored one", before, after)
	}
}
