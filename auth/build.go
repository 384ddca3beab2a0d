package auth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/authsidecar/authsidecar/internal/clock"
	"go.uber.org/zap"
)

// SettingError is a bad setting, named by its variable suffix (TOKEN_URL);
// the config layer adds the route's prefix.
type SettingError struct {
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

func settingErr(setting, format string, args ...any) error {
	return &SettingError{Setting: setting, Err: fmt.Errorf(format, args...)}
}

// Built is a route's auth, ready to use.
type Built struct {
	Grant     Grant
	GrantType GrantType
	// QueryParam is set when the token travels in the query string.
	QueryParam string
	Upstream   *url.URL
	// Refused is the preset's recognizer of refusals that are not 401s.
	Refused func(status int, head []byte) bool
	// StoreKey is the token's key in a shared store, derived from the
	// account the grant gets tokens for (never from a secret).
	StoreKey string
	// LegacyStoreKey, when set, is where an earlier version kept the
	// same token; a token found only there is moved to StoreKey.
	LegacyStoreKey string
}

// Build turns resolved settings (Apply already done) into a grant. It checks
// that every credential the grant needs is there, so a route with a missing
// secret fails at start-up, not on its first call.
func (p Preset) Build(name string, s Settings, client *http.Client, now clock.Clock, log *zap.Logger) (Built, error) {
	b := Built{Refused: p.Refused}
	var err error
	if s.UpstreamURL == "" {
		return b, settingErr("UPSTREAM_URL", "is required")
	}
	if b.Upstream, err = parseHTTPURL(s.UpstreamURL); err != nil {
		return b, &SettingError{Setting: "UPSTREAM_URL", Err: err}
	}
	if b.Upstream.RawQuery != "" {
		return b, settingErr("UPSTREAM_URL", "must not have a query string")
	}

	implied, impliedErr := p.impliedGrant(s)
	if s.Grant == "" {
		b.GrantType, err = implied, impliedErr
	} else {
		b.GrantType, err = parseGrantType(s.Grant)
	}
	if err == nil && !p.supports(b.GrantType) {
		err = fmt.Errorf("preset %s does not offer grant %s (it offers %v)", p.Name, b.GrantType, p.Grants)
	}
	if err != nil {
		return b, &SettingError{Setting: "GRANT", Err: err}
	}
	if err := requireFor(b.GrantType, s); err != nil {
		return b, err
	}
	for _, u := range []struct{ setting, value string }{
		{"TOKEN_URL", s.TokenURL}, {"REFRESH_URL", s.RefreshURL}, {"AUTHORIZE_URL", s.AuthorizeURL},
		{"REDIRECT_URL", s.RedirectURL}, {"REVOKE_URL", s.RevokeURL},
	} {
		if u.value == "" {
			continue
		}
		parsed, err := parseHTTPURL(u.value)
		if err != nil {
			return b, &SettingError{Setting: u.setting, Err: err}
		}
		if carriesSecrets(u.setting) && parsed.Scheme == "http" && !loopback(parsed.Hostname()) && !s.AllowInsecureTokenURL {
			return b, settingErr(u.setting, "is plain http:// to another host: client secrets, passwords and refresh tokens would cross the network in clear; use https://, or set ALLOW_INSECURE_TOKEN_URL=true for this route if that network is trusted")
		}
	}

	switch s.Inject {
	case "", "header":
		if s.QueryParam != "" {
			// Dropped, it would leave the operator sure the token travels
			// in the query string while it goes in the Authorization header.
			return b, settingErr("QUERY_PARAM", "is used only with INJECT=query; this route sends the token in the Authorization header")
		}
	case "query":
		b.QueryParam = s.QueryParam
		if b.QueryParam == "" {
			b.QueryParam = "access_token"
		}
	default:
		return b, settingErr("INJECT", "unknown injection %q (want header or query)", s.Inject)
	}

	ep := &Endpoint{Fields: standardFields, Client: client, Clock: now, Log: log}
	if ep.Auth, err = newClientAuth(s, now); err != nil {
		return b, err
	}
	if s.TokenBody != "" {
		if ep.Body, err = parseBodyFormat(s.TokenBody); err != nil {
			return b, &SettingError{Setting: "TOKEN_BODY", Err: err}
		}
	}

	if err := checkRequestExtras(p, b.GrantType, s); err != nil {
		return b, err
	}
	if p.Check != nil {
		if err := p.Check(s, b.GrantType); err != nil {
			return b, err
		}
	}
	if p.NewGrant != nil {
		if b.Grant, err = p.NewGrant(s, ep, b.GrantType); err != nil {
			return b, err
		}
	}
	if b.Grant == nil {
		if b.Grant, err = genericGrant(s, ep, b.GrantType); err != nil {
			return b, err
		}
	}
	id := p.identity(s, b.GrantType, impliedErr == nil && implied == b.GrantType)
	b.StoreKey = id.StoreKey(name)
	if legacy := id.legacyStoreKey(name, s.Grant); legacy != b.StoreKey {
		b.LegacyStoreKey = legacy
	}
	return b, nil
}

// impliedGrant is the grant the credentials imply. A client id and secret
// mean client credentials, unless the vendor has no such grant and wants a
// person's consent instead.
func (p Preset) impliedGrant(s Settings) (GrantType, error) {
	g, err := inferGrant(s)
	if err == nil && g == GrantClientCredentials && !p.supports(GrantClientCredentials) && p.supports(GrantAuthorizationCode) {
		g = GrantAuthorizationCode
	}
	return g, err
}

// genericGrant is RFC 6749 (and RFC 7523, RFC 8693) as the settings
// describe it; presets start from it and add their hooks.
func genericGrant(s Settings, ep *Endpoint, g GrantType) (Grant, error) {
	if g == GrantStatic {
		return StaticGrant{AccessToken: s.AccessToken}, nil
	}
	grant := &OAuth2Grant{
		Type: g, Endpoint: ep,
		TokenURL: s.TokenURL, RefreshURL: s.RefreshURL, Scope: s.Scope,
		Audience: s.Audience, Resource: s.Resource,
		Username: s.Username, Password: s.Password, RefreshToken: s.RefreshToken,
		ConsentPath: s.ConsentPath, RevokeURL: s.RevokeURL,
	}
	var err error
	switch g {
	case GrantJWTBearer:
		grant.BuildPrimary, err = jwtBearerRequest(s, ep.Clock)
	case GrantTokenExchange:
		grant.BuildPrimary, err = tokenExchangeRequest(s)
	}
	return grant, err
}

// checkRequestExtras refuses AUDIENCE, RESOURCE, REQUESTED_TOKEN_TYPE and
// SUBJECT_TOKEN_TYPE where the route's token request would not carry them:
// dropped without a word, they leave a token for the wrong API, or none.
// The generic grant sends audience and resource with client_credentials,
// password and token_exchange; a vendor preset builds its own requests.
func checkRequestExtras(p Preset, g GrantType, s Settings) error {
	const audienceGrants = "client_credentials, password or token_exchange"
	audienceGrant := g == GrantClientCredentials || g == GrantPassword || g == GrantTokenExchange
	for _, x := range []struct {
		setting, value, grants string
		grantSends             bool
	}{
		{"AUDIENCE", s.Audience, audienceGrants, audienceGrant},
		{"RESOURCE", s.Resource, audienceGrants, audienceGrant},
		{"REQUESTED_TOKEN_TYPE", s.RequestedTokenType, "token_exchange", g == GrantTokenExchange},
		{"SUBJECT_TOKEN_TYPE", s.SubjectTokenType, "token_exchange", g == GrantTokenExchange},
	} {
		switch {
		case x.value == "":
		case !x.grantSends:
			return settingErr(x.setting, "is sent only with grant %s; this route's grant is %s", x.grants, g)
		case p.NewGrant != nil:
			return settingErr(x.setting, "is not sent by preset %s, which builds its own token requests; the generic preset (oauth2) sends it with grant %s", p.Name, x.grants)
		}
	}
	if s.Resource != "" {
		if u, err := url.Parse(s.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			return settingErr("RESOURCE", "must be an absolute URI without a fragment (RFC 8707), such as https://api.example.com")
		}
	}
	return nil
}

// requireSettings returns an error naming the first empty setting.
func requireSettings(g GrantType, settings ...[2]string) error {
	for _, n := range settings {
		if n[1] == "" {
			return settingErr(n[0], "is required for grant %s", g)
		}
	}
	return nil
}

// clientCredential is non-empty when the client can authenticate; the
// missing one is named CLIENT_SECRET, the usual one.
func clientCredential(s Settings) string {
	if s.hasClientCredential() {
		return "present"
	}
	return ""
}

// requireFor checks that the settings grant g needs are present.
func requireFor(g GrantType, s Settings) error {
	need := map[GrantType][]struct{ setting, value string }{
		GrantStatic:            {{"ACCESS_TOKEN", s.AccessToken}},
		GrantClientCredentials: {{"CLIENT_ID", s.ClientID}, {"CLIENT_SECRET", clientCredential(s)}, {"TOKEN_URL", s.TokenURL}},
		GrantPassword:          {{"USERNAME", s.Username}, {"PASSWORD", s.Password}, {"TOKEN_URL", s.TokenURL}},
		GrantRefreshToken:      {{"REFRESH_TOKEN", s.RefreshToken}, {"TOKEN_URL", s.TokenURL}},
		GrantAuthorizationCode: {{"CLIENT_ID", s.ClientID}, {"TOKEN_URL", s.TokenURL}, {"AUTHORIZE_URL", s.AuthorizeURL}, {"REDIRECT_URL", s.RedirectURL}},
		GrantJWTBearer:         {{"TOKEN_URL", s.TokenURL}},
		GrantTokenExchange:     {{"TOKEN_URL", s.TokenURL}},
	}
	for _, n := range need[g] {
		if err := requireSettings(g, [2]string{n.setting, n.value}); err != nil {
			return err
		}
	}
	return nil
}

// carriesSecrets reports whether the endpoint a URL setting names receives
// the route's credentials (the authorize URL only receives a browser).
func carriesSecrets(setting string) bool {
	return setting == "TOKEN_URL" || setting == "REFRESH_URL" || setting == "REVOKE_URL"
}

// loopback reports whether host is this machine, where plain http is as
// private as the process.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the input; a URL may hold a secret, so say less.
		return nil, errors.New("is not a valid URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("must be an absolute http:// or https:// URL")
	}
	if u.User != nil {
		return nil, errors.New("must not carry credentials; use the route's credential variables")
	}
	return u, nil
}
