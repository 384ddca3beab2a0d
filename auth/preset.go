package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Settings is a route's auth configuration as the operator wrote it, every
// field a string as it came from the environment. A Preset fills in what the
// operator left empty.
type Settings struct {
	UpstreamURL  string
	Grant        string
	AccessToken  string
	ClientID     string
	ClientSecret string
	Scope        string
	Username     string
	Password     string
	RefreshToken string
	TokenURL     string
	RefreshURL   string
	AuthorizeURL string
	RedirectURL  string
	RevokeURL    string
	ClientAuth   string
	TokenBody    string
	Inject       string
	QueryParam   string
	// Client authentication without a stored secret (CLIENT_AUTH
	// private_key_jwt, client_secret_jwt, tls_client_auth).
	ClientKeyFile           string
	ClientKeyID             string
	ClientKeyAlg            string
	ClientAssertionAudience string
	ClientAssertionFile     string
	// The jwt_bearer grant's assertion: a file, or signed with
	// ClientKeyFile for AssertionSubject (issuer: AssertionIssuer, else
	// the client id).
	AssertionFile, AssertionSubject, AssertionIssuer string
	// The token_exchange grant (RFC 8693).
	SubjectTokenFile, SubjectTokenType, ActorTokenFile string
	Audience, Resource, RequestedTokenType             string
	// A client certificate for the token endpoint and the upstream
	// (RFC 8705), and extra CAs trusted for both.
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// AllowInsecureTokenURL lets a token endpoint on another host be
	// plain http://, for a network the operator trusts.
	AllowInsecureTokenURL bool
	// ConsentPath is where the sidecar serves the route's consent flow; it
	// is not read from the environment but set by the sidecar.
	ConsentPath string
	// Options holds preset-specific settings (NAME_<OPTION>), such as
	// movingimage's VIDEOMANAGER_ID.
	Options map[string]string
}

// Preset is what the sidecar knows about one kind of upstream: defaults for
// its settings and, when RFC 6749 does not describe it, its own grant.
type Preset struct {
	Name string
	// Defaults are used for every setting the operator left empty.
	Defaults Settings
	// Options names the preset-specific variables it reads, upper-case,
	// without the route prefix.
	Options []string
	// Grants lists the grants the vendor offers; nil means all.
	Grants []GrantType
	// Derive, when set, fills settings that follow from others once the
	// defaults are applied, such as auth URLs on a customer's own domain.
	Derive func(s *Settings)
	// Refused, when set, recognizes an answer that refuses the token
	// although its status is not 401 (Viadeo reports a revoked token with
	// a 200). head is at most the first 4 KiB of a JSON answer's body.
	Refused func(status int, head []byte) bool
	// Check, when set, checks vendor-specific requirements of a grant.
	Check func(s Settings, g GrantType) error
	// Account, when set, names what besides the client and user picks the
	// account a token is for, such as movingimage's VideoManager id.
	Account func(s Settings) string
	// NewGrant, when set and returning a grant, is used instead of the generic OAuth2
	// one, for vendors that do not follow RFC 6749.
	NewGrant func(s Settings, ep *Endpoint, grant GrantType) (Grant, error)
}

func (p Preset) supports(g GrantType) bool {
	return p.Grants == nil || slices.Contains(p.Grants, g)
}

var presets = map[string]Preset{}

// registerPreset is called from each preset's file.
func registerPreset(p Preset) {
	if _, dup := presets[p.Name]; dup {
		panic("auth: preset " + p.Name + " registered twice")
	}
	presets[p.Name] = p
}

// LookupPreset returns the preset called name.
func LookupPreset(name string) (Preset, bool) {
	p, ok := presets[name]
	return p, ok
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Apply returns s with every empty setting taken from the preset.
func (p Preset) Apply(s Settings) Settings {
	d := p.Defaults
	fillFrom(&s.UpstreamURL, d.UpstreamURL)
	fillFrom(&s.Grant, d.Grant)
	fillFrom(&s.TokenURL, d.TokenURL)
	fillFrom(&s.RefreshURL, d.RefreshURL)
	fillFrom(&s.AuthorizeURL, d.AuthorizeURL)
	fillFrom(&s.RevokeURL, d.RevokeURL)
	fillFrom(&s.Scope, d.Scope)
	fillFrom(&s.ClientID, d.ClientID)
	if s.ClientKeyFile == "" && s.ClientAssertionFile == "" {
		// A key or an assertion given says how the client authenticates
		// (private_key_jwt); the preset's usual method must not hide it.
		fillFrom(&s.ClientAuth, d.ClientAuth)
	}
	fillFrom(&s.TokenBody, d.TokenBody)
	fillFrom(&s.Inject, d.Inject)
	fillFrom(&s.QueryParam, d.QueryParam)
	for k, v := range d.Options {
		if s.Options == nil {
			s.Options = map[string]string{}
		}
		if s.Options[k] == "" {
			s.Options[k] = v
		}
	}
	if p.Derive != nil {
		p.Derive(&s)
	}
	return s
}

// hasClientCredential reports whether the client can authenticate: a
// secret, a key that signs assertions, a ready-made assertion, or a client
// certificate.
func (s Settings) hasClientCredential() bool {
	return s.ClientSecret != "" || s.ClientKeyFile != "" || s.ClientAssertionFile != "" ||
		(s.ClientAuth == "tls_client_auth" && s.TLSCertFile != "")
}

// ErrNoCredentials is a route given nothing to get a token with. Its text
// names the settings; the configuration layer names them as variables.
var ErrNoCredentials = errors.New("no credentials: set ACCESS_TOKEN, REFRESH_TOKEN, USERNAME and PASSWORD, or CLIENT_ID and CLIENT_SECRET")

// inferGrant picks the grant from the credentials given when the operator
// named none. Ambiguity is an error: guessing wrong would send credentials
// somewhere the operator did not mean.
func inferGrant(s Settings) (GrantType, error) {
	var found []GrantType
	if s.AccessToken != "" {
		found = append(found, GrantStatic)
	}
	if s.RefreshToken != "" {
		found = append(found, GrantRefreshToken)
	}
	if s.Username != "" || s.Password != "" {
		found = append(found, GrantPassword)
	}
	// A client id and a client credential without a redirect URL are
	// client credentials, also beside another credential: that is
	// ambiguous.
	if s.ClientID != "" && s.hasClientCredential() && s.RedirectURL == "" && (len(found) == 0 || s.AccessToken != "") {
		found = append(found, GrantClientCredentials)
	}
	if len(found) == 0 && s.ClientID != "" && s.RedirectURL != "" {
		found = append(found, GrantAuthorizationCode)
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", ErrNoCredentials
	}
	return "", fmt.Errorf("ambiguous credentials (they fit grants %v): set GRANT", found)
}

// Identity is what identifies the account a route's grant gets tokens for:
// who asks (client, user), where (token URLs, upstream), by which grant, and
// what the preset adds. It holds no secret.
type Identity struct {
	Grant                GrantType
	TokenURL, RefreshURL string
	ClientID, Username   string
	UpstreamURL          string
	Account              string
	// inferredGrant says Grant is what the credentials imply, so the key
	// is the same whether or not GRANT spells it out.
	inferredGrant bool
}

func (p Preset) identity(s Settings, g GrantType, inferred bool) Identity {
	id := Identity{Grant: g, inferredGrant: inferred, TokenURL: s.TokenURL, RefreshURL: s.RefreshURL,
		ClientID: s.ClientID, Username: s.Username, UpstreamURL: s.UpstreamURL}
	if p.Account != nil {
		id.Account = p.Account(s)
	}
	return id
}

// StoreKey is the key of the route's token in a shared store: the route's
// name and a hash of its identity (never a secret), so two deployments of
// one route name with different accounts sharing a store never see each
// other's tokens. It follows the effective grant, not how the configuration
// spelled it: setting GRANT to the grant that was inferred keeps the key, and
// with it the stored (possibly rotated) refresh token.
func (id Identity) StoreKey(route string) string {
	grant := string(id.Grant)
	if id.inferredGrant {
		// Keys were first derived from GRANT as written, mostly empty: an
		// inferred grant hashes as empty so those stored tokens stay found.
		grant = ""
	}
	return storeKey(route, grant, id)
}

// legacyStoreKey is the key earlier versions derived from GRANT as the
// configuration spelled it; a token stored there is moved to StoreKey.
func (id Identity) legacyStoreKey(route, spelledGrant string) string {
	return storeKey(route, spelledGrant, id)
}

func storeKey(route, grant string, id Identity) string {
	h := sha256.New()
	for _, part := range []string{grant, id.TokenURL, id.RefreshURL, id.ClientID, id.Username, id.UpstreamURL, id.Account} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return "token:" + route + ":" + hex.EncodeToString(h.Sum(nil)[:12])
}
