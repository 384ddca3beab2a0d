package app

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

// credentialCase is one way of authenticating without a stored client
// secret, or one secret kept in a file, with the two versions of the
// credential a rotation moves between.
type credentialCase struct {
	name      string
	grantType string
	// fixed are credentials that do not rotate (a fixed client secret).
	fixed []string
	// old and new name the rotating credential as the vendor sees it;
	// files gives the secret volume's content for each.
	old, new string
	files    func(version string) map[string]string
	env      func(vol *secretVolume) map[string]string
	client   func(*credVendor, *http.Request, url.Values) (string, error)
	grant    func(*credVendor, url.Values) (string, error)
	// rebuilds: the file is a route's secret, applied by rebuilding the
	// route; otherwise it is read at each token request.
	rebuilds bool
	// sessions: the rotation also ends the vendor's sessions (refresh
	// tokens), as a password change or a re-consent does.
	sessions bool
}

// credentialCases are the cases on clock, for a vendor at tokenURL.
func credentialCases(t *testing.T, clock *fakeclock.Clock, tokenURL string) []credentialCase {
	k1, k1PEM := newECKey(t)
	k2, k2PEM := newECKey(t)
	keys := map[string]any{"key-1": &k1.PublicKey, "key-2": &k2.PublicKey}
	keyPEM := map[string]string{"key-1": k1PEM, "key-2": k2PEM}
	issuerKey, _ := newECKey(t)
	issuerKeys := map[string]any{"issuer": &issuerKey.PublicKey}
	assertion := func(subject string) func(string) map[string]string {
		return func(id string) map[string]string {
			return map[string]string{"token": issuedAssertion(t, issuerKey, clock, subject, tokenURL, id)}
		}
	}
	base := func(vol *secretVolume, kv ...string) map[string]string {
		env := map[string]string{"ROUTES": "api", "API_CLIENT_ID": "cid"}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	fixedSecret := []string{"fixed-secret"}
	cases := []credentialCase{{
		name: "client_secret_basic/CLIENT_SECRET_FILE", grantType: "client_credentials", old: "secret-1", new: "secret-2",
		files: func(v string) map[string]string { return map[string]string{"secret": v} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_CLIENT_SECRET_FILE", vol.path("secret"))
		},
		client: basicClient, grant: clientCredentials, rebuilds: true,
	}, {
		name: "client_secret_jwt/CLIENT_SECRET_FILE", grantType: "client_credentials", old: "secret-1-of-32-bytes-or-more-----", new: "secret-2-of-32-bytes-or-more-----",
		files: func(v string) map[string]string { return map[string]string{"secret": v} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_CLIENT_AUTH", "client_secret_jwt", "API_CLIENT_SECRET_FILE", vol.path("secret"))
		},
		client: assertionClient(map[string]any{"secret-1-of-32-bytes-or-more-----": []byte("secret-1-of-32-bytes-or-more-----"),
			"secret-2-of-32-bytes-or-more-----": []byte("secret-2-of-32-bytes-or-more-----")}, "cid", false),
		grant: clientCredentials, rebuilds: true,
	}, {
		name: "private_key_jwt/CLIENT_KEY_FILE", grantType: "client_credentials", old: "key-1", new: "key-2",
		files: func(v string) map[string]string { return map[string]string{"key.pem": keyPEM[v]} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_CLIENT_KEY_FILE", vol.path("key.pem"))
		},
		client: assertionClient(keys, "cid", false), grant: clientCredentials,
	}, {
		// Refreshes carry the assertion too.
		name: "private_key_jwt/CLIENT_KEY_FILE, refresh_token", grantType: "refresh_token", fixed: []string{"seed-pkj"},
		old: "key-1", new: "key-2",
		files: func(v string) map[string]string { return map[string]string{"key.pem": keyPEM[v]} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_GRANT", "refresh_token", "API_REFRESH_TOKEN", "seed-pkj", "API_CLIENT_KEY_FILE", vol.path("key.pem"))
		},
		client: assertionClient(keys, "cid", false),
	}, {
		name: "private_key_jwt/CLIENT_ASSERTION_FILE", grantType: "client_credentials", old: "assertion-1", new: "assertion-2",
		files: assertion("cid"),
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_CLIENT_AUTH", "private_key_jwt", "API_CLIENT_ASSERTION_FILE", vol.path("token"))
		},
		client: assertionClient(issuerKeys, k8sIssuer, true), grant: clientCredentials,
	}, {
		name: "jwt_bearer/ASSERTION_FILE", grantType: "urn:ietf:params:oauth:grant-type:jwt-bearer", fixed: []string{"public"},
		old: "assertion-1", new: "assertion-2", files: assertion("robot"),
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_GRANT", "jwt_bearer", "API_CLIENT_AUTH", "none", "API_ASSERTION_FILE", vol.path("token"))
		},
		client: publicClient,
		grant: func(v *credVendor, p url.Values) (string, error) {
			return v.verify(p.Get("assertion"), issuerKeys, k8sIssuer, "robot", true)
		},
	}, {
		name: "jwt_bearer/CLIENT_KEY_FILE", grantType: "urn:ietf:params:oauth:grant-type:jwt-bearer", fixed: []string{"public"},
		old: "key-1", new: "key-2",
		files: func(v string) map[string]string { return map[string]string{"key.pem": keyPEM[v]} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_GRANT", "jwt_bearer", "API_CLIENT_AUTH", "none",
				"API_CLIENT_KEY_FILE", vol.path("key.pem"), "API_ASSERTION_SUBJECT", "robot")
		},
		client: publicClient,
		grant: func(v *credVendor, p url.Values) (string, error) {
			return v.verify(p.Get("assertion"), keys, "cid", "robot", false)
		},
	}, {
		name: "token_exchange/SUBJECT_TOKEN_FILE", grantType: "urn:ietf:params:oauth:grant-type:token-exchange", fixed: fixedSecret,
		old: "subject-1", new: "subject-2",
		files: func(v string) map[string]string { return map[string]string{"subject": v} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_GRANT", "token_exchange", "API_CLIENT_SECRET", "fixed-secret", "API_SUBJECT_TOKEN_FILE", vol.path("subject"))
		},
		client: basicClient,
		grant: func(_ *credVendor, p url.Values) (string, error) {
			if p.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" || p.Has("actor_token") {
				return "", errors.New("want a JWT subject token and no actor")
			}
			return p.Get("subject_token"), nil
		},
	}, {
		name: "password/PASSWORD_FILE", grantType: "password", fixed: fixedSecret, old: "password-1", new: "password-2",
		files: func(v string) map[string]string { return map[string]string{"password": v} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_GRANT", "password", "API_CLIENT_SECRET", "fixed-secret", "API_USERNAME", "user", "API_PASSWORD_FILE", vol.path("password"))
		},
		client: basicClient,
		grant: func(_ *credVendor, p url.Values) (string, error) {
			if p.Get("username") != "user" {
				return "", errors.New("wrong user")
			}
			return p.Get("password"), nil
		},
		rebuilds: true, sessions: true,
	}, {
		name: "refresh_token/REFRESH_TOKEN_FILE", grantType: "refresh_token", fixed: fixedSecret, old: "seed-1", new: "seed-2",
		files: func(v string) map[string]string { return map[string]string{"refresh": v} },
		env: func(vol *secretVolume) map[string]string {
			return base(vol, "API_GRANT", "refresh_token", "API_CLIENT_SECRET", "fixed-secret", "API_REFRESH_TOKEN_FILE", vol.path("refresh"))
		},
		client: basicClient, rebuilds: true, sessions: true,
	}}
	return cases
}

func clientCredentials(*credVendor, url.Values) (string, error) { return "grant", nil }

// Every credential kept in a file, for every method and grant: the first
// token, a refresh at expiry, a 401 replayed with a new token, and a
// rotation of the file mid-traffic (a ..data symlink swap, as Kubernetes
// does it) with zero failed calls — the old credential retired at the vendor
// once the new one is in use.
func TestCredentialFilesRotateUnderTraffic(t *testing.T) {
	for i, c := range credentialCases(t, fakeclock.New(time.Now()), "") {
		t.Run(c.name, func(t *testing.T) { testCredentialRotation(t, i) })
	}
}

func testCredentialRotation(t *testing.T, i int) {
	clock := fakeclock.New(time.Now())
	vendor, upstream := newCredVendor(t, clock)
	c := credentialCases(t, clock, vendor.tokenURL)[i]
	vendor.configure(c.grantType, c.client, c.grant, append([]string{c.old, "grant", "refresh"}, c.fixed...)...)
	vol := newSecretVolume(t, c.files(c.old))
	env := c.env(vol)
	env["API_UPSTREAM_URL"], env["API_TOKEN_URL"] = upstream, vendor.tokenURL
	a, side := sidecar(t, env, clock)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.watchSecretFiles(ctx, 10*time.Millisecond)

	mustCall := func(what string, wantRequests int) {
		t.Helper()
		if got := call(t, "GET", side+"/api/x", nil, nil); got.status != 200 {
			t.Fatalf("%s: %d %s (vendor refused: %v)", what, got.status, got.body, vendor.refused)
		}
		if n := vendor.tokenRequests(); n != wantRequests {
			t.Fatalf("%s: %d tokens issued, want %d (%v)", what, n, wantRequests, vendor.used)
		}
	}
	mustCall("first token", 1)
	if !strings.Contains(vendor.lastUsed(), c.old) {
		t.Fatalf("first token issued for %q, want %q", vendor.lastUsed(), c.old)
	}
	clock.Advance(2 * time.Hour)
	mustCall("refresh at expiry", 2)
	clock.Advance(6 * time.Second) // past the bound on forced refreshes
	vendor.revokeAll(false)
	mustCall("401 replayed", 3)

	// The rotation, under load.
	stopLoad := startLoad(side + "/api/x")
	time.Sleep(50 * time.Millisecond)
	vendor.setValid(c.new, true)
	before, _ := a.routes.Get("api")
	vol.update(c.files(c.new))
	if c.rebuilds {
		waitFor(t, "the route rebuilt with the new file", func() bool {
			now, _ := a.routes.Get("api")
			return now != before
		})
	}
	// The first revocation waits as long as the later ones: calls that
	// began on the replaced route finish with the credentials they began
	// with, which for a configured refresh token are dead once revoked.
	lastRevoke := time.Now()
	waitFor(t, "a token issued for the new credential", func() bool {
		if strings.Contains(vendor.lastUsed(), c.new) {
			return true
		}
		if time.Since(lastRevoke) > 100*time.Millisecond { // so that a replay's new token lives
			lastRevoke = time.Now()
			clock.Advance(6 * time.Second)
			vendor.revokeAll(c.sessions)
		}
		return false
	})
	vendor.setValid(c.old, false)
	time.Sleep(50 * time.Millisecond)
	if n, first := stopLoad(); n != 0 {
		t.Fatalf("%d calls failed during the rotation (first: %s; vendor refused: %v)", n, first, vendor.refused)
	}

	// With the old credential retired, the next token is the new one's —
	// or, for a configured refresh token, which is single-use, one refreshed
	// from the chain it began.
	clock.Advance(6 * time.Second)
	n := vendor.tokenRequests()
	want := c.new
	if c.grantType == "refresh_token" {
		vendor.revokeAll(false)
		want = "refresh"
	} else {
		vendor.revokeAll(c.sessions)
	}
	mustCall("after the old credential was retired", n+1)
	if !strings.Contains(vendor.lastUsed(), want) {
		t.Fatalf("token issued for %q after the rotation, want %q", vendor.lastUsed(), want)
	}

	// The file goes away: the last good value stays in use, and /readyz
	// names the variable.
	var variable string
	for k, v := range env {
		if strings.HasPrefix(v, vol.dir) {
			variable = k
		}
	}
	os.Remove(filepath.Join(vol.dir, "..data"))
	waitFor(t, variable+" on /readyz", func() bool {
		files, _ := readyz(t, side)["secret_files"].(map[string]any)
		return files[variable] != nil
	})
	clock.Advance(6 * time.Second)
	n = vendor.tokenRequests()
	vendor.revokeAll(c.sessions && c.grantType != "refresh_token")
	mustCall("after the file went away", n+1)
	if !strings.Contains(vendor.lastUsed(), want) {
		t.Fatalf("token issued for %q after the file went away, want %q", vendor.lastUsed(), want)
	}
}
