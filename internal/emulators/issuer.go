// Package emulators are local stand-ins for the four vendors of the seed
// documents. Each is strict about request shapes as its vendor documents
// them, issues short-lived tokens and answers 401 once they expire. The
// tests and `authsidecar demo` use the same emulators.
package emulators

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Options are what every emulator shares.
type Options struct {
	ClientID     string
	ClientSecret string
	Username     string
	Password     string
	// RedirectURL, when set, is the only redirect_uri the authorize and
	// token endpoints accept, as the vendor's registered callback.
	RedirectURL string
	// AccessLifetime and RefreshLifetime; zero means the vendor's own.
	AccessLifetime  time.Duration
	RefreshLifetime time.Duration
	// DenyConsent makes the authorize endpoint answer access_denied, as
	// when the user clicks Cancel.
	DenyConsent bool
	// Now is the emulator's clock; nil means time.Now.
	Now func() time.Time
}

// issuer keeps the tokens an emulator issued. Refresh tokens are single-use
// where the vendor rotates them: presenting one twice revokes every token of
// the same grant (refresh token reuse detection, OAuth 2.0 Security BCP).
type issuer struct {
	now    func() time.Time
	rotate bool

	mu       sync.Mutex
	access   map[string]issued
	refresh  map[string]issued
	codes    map[string]issued // authorization codes, single-use
	revoked  map[string]bool   // families
	counts   map[string]int    // successful token requests by kind
	refusals []string          // why each refused request was refused
	apiCalls int
	api401   int
}

type issued struct {
	family  string
	expires time.Time // zero: never
	used    bool
	extra   string // what the token is bound to (a redirect URI, a VideoManager)
}

func newIssuer(now func() time.Time, rotate bool) *issuer {
	if now == nil {
		now = time.Now
	}
	return &issuer{
		now: now, rotate: rotate,
		access: map[string]issued{}, refresh: map[string]issued{}, codes: map[string]issued{},
		revoked: map[string]bool{}, counts: map[string]int{},
	}
}

func randomToken(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// jwt makes a token shaped as a JWT whose payload carries exp, as Passport
// and movingimage issue them. The signature is random: nobody checks it.
func jwt(exp time.Time, claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload := map[string]any{"exp": exp.Unix(), "jti": randomToken("")}
	for k, v := range claims {
		payload[k] = v
	}
	p, _ := json.Marshal(payload)
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc.EncodeToString(p) + "." + randomToken("")
}

func expiry(now time.Time, lifetime time.Duration) time.Time {
	if lifetime <= 0 {
		return time.Time{}
	}
	return now.Add(lifetime)
}

// grantTokens issues an access token (and a refresh token when
// refreshLifetime is not negative) of family, counting kind.
func (i *issuer) grantTokens(kind, family, extra string, access, refresh string, accessExp, refreshExp time.Time, withRefresh bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.access[access] = issued{family: family, expires: accessExp, extra: extra}
	if withRefresh {
		i.refresh[refresh] = issued{family: family, expires: refreshExp, extra: extra}
	}
	i.counts[kind]++
}

// useRefresh checks a presented refresh token and, when the vendor rotates,
// spends it. It returns the token's family and binding, or why it was refused.
func (i *issuer) useRefresh(rt string) (issued, string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	rec, ok := i.refresh[rt]
	switch {
	case !ok:
		return issued{}, "unknown refresh token"
	case i.revoked[rec.family]:
		return issued{}, "refresh token revoked"
	case !rec.expires.IsZero() && !i.now().Before(rec.expires):
		return issued{}, "refresh token expired"
	case rec.used:
		i.revoked[rec.family] = true
		return issued{}, "refresh token reused; every token of its grant is revoked"
	}
	if i.rotate {
		rec.used = true
		i.refresh[rt] = rec
	}
	return rec, ""
}

func (i *issuer) newCode(redirectURI string) string {
	code := randomToken("code-")
	i.mu.Lock()
	i.codes[code] = issued{family: randomToken("f-"), expires: i.now().Add(10 * time.Minute), extra: redirectURI}
	i.mu.Unlock()
	return code
}

func (i *issuer) useCode(code, redirectURI string) (family, why string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	rec, ok := i.codes[code]
	switch {
	case !ok || rec.used:
		return "", "authorization code unknown or already used"
	case !i.now().Before(rec.expires):
		return "", "authorization code expired"
	case rec.extra != redirectURI:
		return "", "redirect_uri differs from the authorize request's"
	}
	rec.used = true
	i.codes[code] = rec
	return rec.family, ""
}

// checkAccess reports whether tok may call the API now, and counts the call.
func (i *issuer) checkAccess(tok string) (issued, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.apiCalls++
	rec, ok := i.access[tok]
	valid := ok && !i.revoked[rec.family] && (rec.expires.IsZero() || i.now().Before(rec.expires))
	if !valid {
		i.api401++
	}
	return rec, valid
}

func (i *issuer) refuse(why string) {
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

func (i *issuer) stats() Stats {
	i.mu.Lock()
	defer i.mu.Unlock()
	counts := make(map[string]int, len(i.counts))
	for k, v := range i.counts {
		counts[k] = v
	}
	return Stats{TokenRequests: counts, Refusals: append([]string(nil), i.refusals...), APICalls: i.apiCalls, API401s: i.api401}
}

// revokeAll revokes every token issued so far.
func (i *issuer) revokeAll() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, rec := range i.access {
		i.revoked[rec.family] = true
	}
}

// expireAccess ends every access token now, leaving refresh tokens good, as
// time passing would.
func (i *issuer) expireAccess() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for k, rec := range i.access {
		rec.expires = i.now().Add(-time.Second)
		i.access[k] = rec
	}
}

// secrets lists every token issued, for leak checks.
func (i *issuer) secrets() []string {
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

// authorize serves an authorize endpoint that approves at once, as if the
// user had clicked Allow (or Cancel, with DenyConsent).
func authorize(i *issuer, o Options, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "authorize is a GET", http.StatusMethodNotAllowed)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("client_id") != o.ClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case redirect == "" || (o.RedirectURL != "" && redirect != o.RedirectURL):
		// Never redirect to an unregistered URI (RFC 6749 4.1.2.1).
		http.Error(w, "redirect_uri does not match the client's", http.StatusBadRequest)
		return
	}
	target, err := url.Parse(redirect)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := target.Query()
	if state := q.Get("state"); state != "" {
		back.Set("state", state)
	}
	if o.DenyConsent {
		back.Set("error", "access_denied")
		back.Set("error_description", "The user denied access")
	} else {
		back.Set("code", i.newCode(redirect))
	}
	target.RawQuery = back.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// oauthError answers an RFC 6749 error and notes why.
func oauthError(i *issuer, w http.ResponseWriter, status int, code, why string) {
	i.refuse(fmt.Sprintf("%s: %s", code, why))
	writeJSON(w, status, map[string]string{"error": code, "error_description": why})
}
