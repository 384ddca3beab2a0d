package app

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

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
