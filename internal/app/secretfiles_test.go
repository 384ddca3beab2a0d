package app

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

// secretVolume is a folder laid out as Kubernetes mounts a Secret: each key
// a link into ..data, itself a link to a timestamped folder, swapped whole.
type secretVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newSecretVolume(t *testing.T, data map[string]string) *secretVolume {
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.update(data)
	for k := range data {
		os.Symlink(filepath.Join("..data", k), filepath.Join(v.dir, k))
	}
	return v
}

func (v *secretVolume) path(key string) string { return filepath.Join(v.dir, key) }

// update writes a new version and swaps ..data to it atomically.
func (v *secretVolume) update(data map[string]string) {
	v.n++
	version := filepath.Join(v.dir, "..v"+string(rune('0'+v.n)))
	os.MkdirAll(version, 0o700)
	for k, val := range data {
		os.WriteFile(filepath.Join(version, k), []byte(val+"\n"), 0o600)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
}

// rotatingVendor takes client credentials with whichever secret it is told
// is current, and tokens it issued until it expires them.
type secretVendor struct {
	mu      sync.Mutex
	secrets map[string]bool // accepted client secrets
	tokens  map[string]bool
	seen    []string // the secret of each token request
	n       atomic.Int32
}

func (v *secretVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if r.URL.Path == "/token" {
		id, secret, _ := r.BasicAuth()
		v.seen = append(v.seen, secret)
		if id != "cid" || !v.secrets[secret] {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		tok := "at-" + string(rune('a'+v.n.Add(1)))
		v.tokens[tok] = true
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": 3600})
		return
	}
	if !v.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Write([]byte("ok"))
}

// A client secret mounted from a Secret is rotated (a ..data swap) under
// load: no call fails, the next token request uses the new secret, and a
// file that disappears keeps the last good value and shows on /readyz.
func TestSecretFilesAreWatched(t *testing.T) {
	vendor := &secretVendor{secrets: map[string]bool{"secret-one": true}, tokens: map[string]bool{}}
	url := serve(t, vendor)
	clock := fakeclock.New(time.Now())
	vol := newSecretVolume(t, map[string]string{"CLIENT_SECRET": "secret-one"})
	a, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": url, "API_TOKEN_URL": url + "/token",
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET_FILE": vol.path("CLIENT_SECRET")}, clock)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.watchSecretFiles(ctx, 10*time.Millisecond)

	stopLoad := startLoad(side + "/api/x")
	time.Sleep(100 * time.Millisecond) // calls with the first secret's token

	// A rotation as vendors run it: the new secret is added, the Secret
	// updated, the old secret retired. The vendor also drops the tokens it
	// issued, so the next calls need a new one.
	vendor.mu.Lock()
	vendor.secrets["secret-two"] = true
	vendor.mu.Unlock()
	before, _ := a.routes.Get("api")
	vol.update(map[string]string{"CLIENT_SECRET": "secret-two"})
	waitFor(t, "the route rebuilt with the new secret", func() bool {
		now, _ := a.routes.Get("api")
		return now != before
	})
	// A call already under way on the old route may take the new token
	// with the old secret; the vendor expires tokens until the new secret
	// asks for one. (A token is force-refreshed at most every 5 s, on the
	// test's clock.)
	lastExpiry := time.Time{}
	waitFor(t, "the new secret in use", func() bool {
		vendor.mu.Lock()
		defer vendor.mu.Unlock()
		if vendor.seen[len(vendor.seen)-1] == "secret-two" {
			return true
		}
		if time.Since(lastExpiry) > 100*time.Millisecond { // a replay's new token is not expired at once
			lastExpiry = time.Now()
			tryExpire(vendor)
			clock.Advance(6 * time.Second) // past the bound on forced refreshes of one token
		}
		return false
	})
	vendor.mu.Lock()
	delete(vendor.secrets, "secret-one")
	vendor.mu.Unlock()
	time.Sleep(100 * time.Millisecond) // calls on the new secret's token
	if n, first := stopLoad(); n != 0 {
		t.Fatalf("%d calls failed while the secret rotated (first: %s)", n, first)
	}
	vendor.mu.Lock()
	last := vendor.seen[len(vendor.seen)-1]
	vendor.mu.Unlock()
	if last != "secret-two" {
		t.Fatalf("the last token request used %q", last)
	}

	// The file goes away: the last good value stays, and /readyz says so.
	os.Remove(filepath.Join(vol.dir, "..data"))
	waitFor(t, "the unreadable file on /readyz", func() bool {
		_, has := readyz(t, side)["secret_files"]
		return has
	})
	if a := call(t, "GET", side+"/api/x", nil, nil); a.status != 200 {
		t.Fatalf("after the file went away: %d", a.status)
	}
}

// tryExpire makes the vendor drop the tokens it issued once (so the
// sidecar must ask again), and reports false so waiting goes on.
func tryExpire(v *secretVendor) bool {
	for k := range v.tokens {
		delete(v.tokens, k)
	}
	return false
}

// Setting a variable and its _FILE twin is an error naming both.
func TestSecretAndItsFileTwinAreExclusive(t *testing.T) {
	vol := newSecretVolume(t, map[string]string{"ACCESS_TOKEN": "t"})
	_, err := config.LoadFrom(map[string]string{"ROUTES": "api", "API_ACCESS_TOKEN": "t", "API_ACCESS_TOKEN_FILE": vol.path("ACCESS_TOKEN")})
	if err == nil || !strings.Contains(err.Error(), "API_ACCESS_TOKEN and API_ACCESS_TOKEN_FILE") {
		t.Fatalf("err = %v", err)
	}
}

// A new static token in its file is served from the next call.
func TestStaticTokenFileIsServedFromTheNextCall(t *testing.T) {
	vendor := &secretVendor{secrets: map[string]bool{}, tokens: map[string]bool{"static-one": true, "static-two": true}}
	url := serve(t, vendor)
	vol := newSecretVolume(t, map[string]string{"ACCESS_TOKEN": "static-one"})
	a, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": url,
		"API_ACCESS_TOKEN_FILE": vol.path("ACCESS_TOKEN")}, fakeclock.New(time.Now()))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.watchSecretFiles(ctx, 10*time.Millisecond)
	seen := func() string {
		rt, _ := a.routes.Get("api")
		tok, _ := rt.Keeper.Token(context.Background())
		return tok.AccessToken
	}
	call(t, "GET", side+"/api/x", nil, nil)
	if got := seen(); got != "static-one" {
		t.Fatalf("token %q", got)
	}
	vol.update(map[string]string{"ACCESS_TOKEN": "static-two"})
	waitFor(t, "the new static token", func() bool { return seen() == "static-two" })
}
