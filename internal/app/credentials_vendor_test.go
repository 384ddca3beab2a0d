package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

// credVendor is a token endpoint and API that verify what they get, as the
// RFCs describe: client assertions (RFC 7523 §3: signature, iss, sub, aud,
// exp, a jti never seen before), jwt-bearer grants, token exchange (RFC 8693
// §2.1), passwords and single-use refresh tokens. Each credential it checks
// has a name, and only the names in valid are accepted, so a test can roll
// a credential over: allow the new one, swap the file, retire the old one.
type credVendor struct {
	clock    *fakeclock.Clock
	tokenURL string
	// client names the client authentication presented, grant the grant's
	// own credential; an error refuses the request.
	client func(v *credVendor, r *http.Request, p url.Values) (string, error)
	grant  func(v *credVendor, p url.Values) (string, error)
	// grantType is the primary grant accepted besides refresh_token.
	grantType string

	mu      sync.Mutex
	valid   map[string]bool
	used    []string             // per issued token: the names it was issued for
	access  map[string]time.Time // live access tokens and their expiry
	refresh map[string]bool      // live refresh tokens, each usable once
	jtis    map[string]bool
	refused []string
	n       int
	// family names the configured refresh token each issued token descends
	// from, so the API can say whose token it saw.
	family map[string]string
}

func newCredVendor(t *testing.T, clock *fakeclock.Clock) (*credVendor, string) {
	v := &credVendor{clock: clock, valid: map[string]bool{},
		access: map[string]time.Time{}, refresh: map[string]bool{}, jtis: map[string]bool{}, family: map[string]string{}}
	srv := serve(t, v)
	v.tokenURL = srv + "/token"
	return v, srv
}

// configure sets what the vendor verifies and the credentials valid at
// first; grant may be nil when only refresh tokens are taken.
func (v *credVendor) configure(grantType string, client func(*credVendor, *http.Request, url.Values) (string, error),
	grant func(*credVendor, url.Values) (string, error), valid ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.grantType, v.client, v.grant = grantType, client, grant
	if v.grant == nil {
		v.grant = func(*credVendor, url.Values) (string, error) { return "", errors.New("no primary grant") }
	}
	for _, name := range valid {
		v.valid[name] = true
	}
}

func (v *credVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if r.URL.Path != "/token" {
		at := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if exp, ok := v.access[at]; !ok || !v.clock.Now().Before(exp) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if len(r.Header.Values("X-Authsidecar-Account")) != 0 {
			w.WriteHeader(http.StatusBadRequest) // the sidecar's own header reached the vendor
			return
		}
		w.Write([]byte("ok " + v.family[at]))
		return
	}
	refuse := func(status int, code, why string) {
		v.refused = append(v.refused, code+": "+why)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		refuse(http.StatusBadRequest, "invalid_request", "not a form POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		refuse(http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	p := r.PostForm
	client, err := v.client(v, r, p)
	if err != nil || !v.valid[client] {
		refuse(http.StatusUnauthorized, "invalid_client", fmt.Sprintf("%s: %v", client, err))
		return
	}
	var grant, family string
	switch gt := p.Get("grant_type"); gt {
	case "refresh_token":
		rt := p.Get("refresh_token")
		if !v.refresh[rt] && !v.valid[rt] { // a configured refresh token is a credential of its own
			refuse(http.StatusBadRequest, "invalid_grant", "refresh token not live")
			return
		}
		delete(v.refresh, rt)
		delete(v.valid, rt) // single use, configured ones too
		grant = "refresh"
		family = v.family[rt]
		if strings.HasPrefix(rt, "seed-") {
			grant, family = rt, rt
		}
	case v.grantType:
		if grant, err = v.grant(v, p); err != nil || !v.valid[grant] {
			refuse(http.StatusBadRequest, "invalid_grant", fmt.Sprintf("%s: %v", grant, err))
			return
		}
	default:
		refuse(http.StatusBadRequest, "unsupported_grant_type", gt)
		return
	}
	v.n++
	at := fmt.Sprintf("at-%d", v.n)
	v.access[at] = v.clock.Now().Add(time.Hour)
	v.family[at] = family
	v.used = append(v.used, client+" "+grant)
	answer := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600}
	if v.grantType == "password" || v.grantType == "refresh_token" {
		rt := fmt.Sprintf("rt-%d", v.n)
		v.refresh[rt] = true
		v.family[rt] = family
		answer["refresh_token"] = rt
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

// tokenRequests is how many tokens were issued; lastUsed names the last.
func (v *credVendor) tokenRequests() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.used)
}

func (v *credVendor) lastUsed() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.used) == 0 {
		return ""
	}
	return v.used[len(v.used)-1]
}

func (v *credVendor) setValid(name string, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.valid[name] = ok
}

// revokeAll ends every access token, and every refresh token when sessions
// are revoked too (a password change does that).
func (v *credVendor) revokeAll(sessions bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.access)
	if sessions {
		clear(v.refresh)
	}
}

// Client authentications.

func basicClient(_ *credVendor, r *http.Request, p url.Values) (string, error) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != "cid" || p.Has("client_secret") || p.Has("client_assertion") {
		return "", errors.New("want HTTP Basic and nothing else")
	}
	return secret, nil
}

func publicClient(_ *credVendor, r *http.Request, p url.Values) (string, error) {
	if r.Header.Get("Authorization") != "" || p.Has("client_secret") || p.Has("client_assertion") || p.Get("client_id") != "cid" {
		return "", errors.New("want client_id alone")
	}
	return "public", nil
}

// assertionClient verifies client_assertion as RFC 7523 §3 asks, with
// whichever of keys verifies it; fileAssertion relaxes the jti rule for a
// ready-made assertion (a projected token is presented until it rotates).
func assertionClient(keys map[string]any, issuer string, fileAssertion bool) func(*credVendor, *http.Request, url.Values) (string, error) {
	return func(v *credVendor, r *http.Request, p url.Values) (string, error) {
		if r.Header.Get("Authorization") != "" || p.Has("client_secret") ||
			p.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			return "", errors.New("want a client assertion and nothing else")
		}
		return v.verify(p.Get("client_assertion"), keys, issuer, "cid", fileAssertion)
	}
}

func (v *credVendor) verify(assertion string, keys map[string]any, issuer, subject string, reusable bool) (string, error) {
	parsed, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.ES256, jose.HS256})
	if err != nil {
		return "", fmt.Errorf("parsing the assertion: %w", err)
	}
	for name, key := range keys {
		var claims jwt.Claims
		if parsed.Claims(key, &claims) != nil {
			continue
		}
		if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Subject: subject,
			AnyAudience: jwt.Audience{v.tokenURL}, Time: v.clock.Now()}, 0); err != nil {
			return "", fmt.Errorf("claims: %w", err)
		}
		if claims.Expiry == nil || claims.ID == "" {
			return "", errors.New("no exp or no jti")
		}
		if reusable {
			return claims.ID, nil // a ready-made assertion is named by its jti
		}
		if v.jtis[claims.ID] {
			return "", errors.New("jti seen before")
		}
		v.jtis[claims.ID] = true
		return name, nil
	}
	return "", errors.New("no key verifies the assertion")
}

const k8sIssuer = "https://kubernetes.default.svc"

// Test credentials.

func newECKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// issuedAssertion is a token as a workload identity issuer (the Kubernetes
// API server) signs it: for subject, to the token endpoint, named id.
func issuedAssertion(t *testing.T, key *ecdsa.PrivateKey, clock *fakeclock.Clock, subject, aud, id string) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	s, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: k8sIssuer, Subject: subject,
		Audience: jwt.Audience{aud}, ID: id, IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(48 * time.Hour))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
