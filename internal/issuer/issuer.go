// Package issuer is the one token-issuing core of the test vendors: the
// strict generic OAuth2 server (internal/oauthtest) and the four vendor
// emulators (internal/emulators) are front ends that speak their vendor's
// wire dialect over it. It keeps what was issued, makes refresh tokens
// single-use where a vendor rotates them (presenting one twice revokes its
// whole family, as the OAuth 2.0 Security BCP says), and counts what it saw.
package issuer

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// Issuer keeps the tokens a fake vendor issued. Refresh tokens are single-use
// where the vendor rotates them: presenting one twice revokes every token of
// the same grant (refresh token reuse detection, OAuth 2.0 Security BCP).
type Issuer struct {
	now    clock.Clock
	rotate bool

	mu       sync.Mutex
	access   map[string]Issued
	refresh  map[string]Issued
	codes    map[string]Issued // authorization codes, single-use
	revoked  map[string]bool   // families
	counts   map[string]int    // successful token requests by kind
	refusals []string          // why each refused request was refused
	apiCalls int
	api401   int
	// refuseAll makes the API refuse every token, as a vendor whose
	// token check is broken.
	refuseAll bool
}

type Issued struct {
	Family  string
	Expires time.Time // zero: never
	Used    bool
	Binding string // what the token is bound to (a redirect URI, a VideoManager)
}

// New returns an issuer on clock now; with rotate, refresh tokens are
// single-use.
func New(now clock.Clock, rotate bool) *Issuer {
	return &Issuer{
		now: now, rotate: rotate,
		access: map[string]Issued{}, refresh: map[string]Issued{}, codes: map[string]Issued{},
		revoked: map[string]bool{}, counts: map[string]int{},
	}
}

// RandomToken is an unguessable token with prefix.
func RandomToken(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// JWT makes a token shaped as a JWT whose payload carries exp, as Passport
// and movingimage issue them. The signature is random: nobody checks it.
func JWT(exp time.Time, claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload := map[string]any{"exp": exp.Unix(), "jti": RandomToken("")}
	for k, v := range claims {
		payload[k] = v
	}
	p, _ := json.Marshal(payload)
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc.EncodeToString(p) + "." + RandomToken("")
}

// Expiry is now+lifetime, or zero (never) for a lifetime of zero.
func Expiry(now time.Time, lifetime time.Duration) time.Time {
	if lifetime <= 0 {
		return time.Time{}
	}
	return now.Add(lifetime)
}

// Grant issues an access token (and a refresh token when
// refreshLifetime is not negative) of family, counting kind.
func (i *Issuer) Grant(kind, family, extra string, access, refresh string, accessExp, refreshExp time.Time, withRefresh bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.access[access] = Issued{Family: family, Expires: accessExp, Binding: extra}
	if withRefresh {
		i.refresh[refresh] = Issued{Family: family, Expires: refreshExp, Binding: extra}
	}
	i.counts[kind]++
}

// UseRefresh checks a presented refresh token and, when the vendor rotates,
// spends it. It returns the token's family and binding, or why it was refused.
func (i *Issuer) UseRefresh(rt string) (Issued, string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	rec, ok := i.refresh[rt]
	switch {
	case !ok:
		return Issued{}, "unknown refresh token"
	case i.revoked[rec.Family]:
		return Issued{}, "refresh token revoked"
	case !rec.Expires.IsZero() && !i.now.Now().Before(rec.Expires):
		return Issued{}, "refresh token expired"
	case rec.Used:
		i.revoked[rec.Family] = true
		return Issued{}, "refresh token reused; every token of its grant is revoked"
	}
	if i.rotate {
		rec.Used = true
		i.refresh[rt] = rec
	}
	return rec, ""
}

func (i *Issuer) NewCode(redirectURI string) string {
	code := RandomToken("code-")
	i.mu.Lock()
	i.codes[code] = Issued{Family: RandomToken("f-"), Expires: i.now.Now().Add(10 * time.Minute), Binding: redirectURI}
	i.mu.Unlock()
	return code
}

func (i *Issuer) UseCode(code, redirectURI string) (family, why string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	rec, ok := i.codes[code]
	switch {
	case !ok || rec.Used:
		return "", "authorization code unknown or already used"
	case !i.now.Now().Before(rec.Expires):
		return "", "authorization code expired"
	case rec.Binding != redirectURI:
		return "", "redirect_uri differs from the authorize request's"
	}
	rec.Used = true
	i.codes[code] = rec
	return rec.Family, ""
}

// CheckAccess reports whether tok may call the API now, and counts the call.
func (i *Issuer) CheckAccess(tok string) (Issued, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.apiCalls++
	rec, ok := i.access[tok]
	valid := ok && !i.refuseAll && !i.revoked[rec.Family] && (rec.Expires.IsZero() || i.now.Now().Before(rec.Expires))
	if !valid {
		i.api401++
	}
	return rec, valid
}

func (i *Issuer) Refuse(why string) {
	i.mu.Lock()
	i.refusals = append(i.refusals, why)
	i.mu.Unlock()
}

// Stats is what an emulator saw.
type Stats struct {
	// TokenRequests counts successful token requests by kind: login,
	// client_credentials, refresh_token, authorization_code.
	TokenRequests map[string]int
	// Refusals says why each refused token request was refused.
	Refusals []string
	APICalls int
	API401s  int
}

func (i *Issuer) Stats() Stats {
	i.mu.Lock()
	defer i.mu.Unlock()
	counts := make(map[string]int, len(i.counts))
	for k, v := range i.counts {
		counts[k] = v
	}
	return Stats{TokenRequests: counts, Refusals: append([]string(nil), i.refusals...), APICalls: i.apiCalls, API401s: i.api401}
}

// RevokeAll revokes every token issued so far.
func (i *Issuer) RevokeAll() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, rec := range i.access {
		i.revoked[rec.Family] = true
	}
}

// ExpireAccess ends every access token now, leaving refresh tokens good, as
// time passing would.
func (i *Issuer) ExpireAccess() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for k, rec := range i.access {
		rec.Expires = i.now.Now().Add(-time.Second)
		i.access[k] = rec
	}
}

// Secrets lists every token issued, for leak checks.
func (i *Issuer) Secrets() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []string
	for k := range i.access {
		out = append(out, k)
	}
	for k := range i.refresh {
		out = append(out, k)
	}
	return out
}

// SetRefuseAll makes the API refuse (or again accept) every token.
func (i *Issuer) SetRefuseAll(on bool) {
	i.mu.Lock()
	i.refuseAll = on
	i.mu.Unlock()
}

// Revoked reports whether family was revoked (by reuse or by RevokeAll).
func (i *Issuer) Revoked(family string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.revoked[family]
}

// Now is the issuer's clock, for front ends that compute expiries.
func (i *Issuer) Now() time.Time { return i.now.Now() }

// RevokeAccess revokes the family of access token tok, as a revocation
// endpoint does, and reports whether tok was known.
func (i *Issuer) RevokeAccess(tok string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	rec, ok := i.access[tok]
	if ok {
		i.revoked[rec.Family] = true
	}
	return ok
}

// AddRefresh accepts rt as a refresh token of family from now on, as if a
// person had consented earlier (a refresh token given in configuration).
func (i *Issuer) AddRefresh(rt, family string, expires time.Time) {
	i.mu.Lock()
	i.refresh[rt] = Issued{Family: family, Expires: expires}
	i.mu.Unlock()
}
