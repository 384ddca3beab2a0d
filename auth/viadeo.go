package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Viadeo (professional network), https://api.viadeo.com.
//
// The token travels as the access_token query parameter on every method,
// POST included. It comes from VIADEO_ACCESS_TOKEN or from the consent flow
// (authorize2 / access_token2, form body, client credentials in the body;
// the answer may be JSON or form-encoded). Tokens never expire and there is
// no refresh: a refused token means a person must consent again, and the
// caller is told so, with where.
func init() {
	registerPreset(Preset{
		Name: "viadeo",
		Defaults: Settings{
			UpstreamURL:  "https://api.viadeo.com",
			AuthorizeURL: "https://secure.viadeo.com/oauth-provider/authorize2",
			TokenURL:     "https://secure.viadeo.com/oauth-provider/access_token2",
			RevokeURL:    "https://secure.viadeo.com/oauth-provider/revoke_access_token2",
			ClientAuth:   "body",
			TokenBody:    "form",
			Inject:       "query",
			QueryParam:   "access_token",
		},
		Grants:  []GrantType{GrantStatic, GrantAuthorizationCode},
		Refused: viadeoRefused,
		Check: func(s Settings, g GrantType) error {
			if g == GrantAuthorizationCode {
				return clientCredentialsRequired(s, g)
			}
			return nil
		},
		NewGrant: func(s Settings, ep *Endpoint, g GrantType) (Grant, error) {
			return &viadeoGrant{
				configured:  s.AccessToken,
				exchange:    &OAuth2Grant{Type: GrantAuthorizationCode, Endpoint: ep, TokenURL: s.TokenURL},
				revokeURL:   s.RevokeURL,
				redirectURL: s.RedirectURL,
				consentPath: s.ConsentPath,
			}, nil
		},
	})
}

// viadeoRefused recognizes Viadeo's answer to a revoked token, which may
// come with a 200: {"error":{"type":"Token revoked","message":[…]}}.
func viadeoRefused(status int, head []byte) bool {
	var answer struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(head, &answer) != nil {
		return false
	}
	switch strings.ToLower(answer.Error.Type) {
	case "token revoked", "invalid token", "invalid_token", "token expired":
		return true
	}
	return false
}

type viadeoGrant struct {
	configured  string // VIADEO_ACCESS_TOKEN, if any
	exchange    *OAuth2Grant
	revokeURL   string
	redirectURL string
	consentPath string
	account     bool // one of the route's accounts, not its own
}

// Fetch implements Grant. Viadeo tokens do not expire, so asked for a new
// token while holding one means the one held was refused.
func (g *viadeoGrant) Fetch(_ context.Context, prev Token) (Token, error) {
	switch {
	case prev.AccessToken == "" && g.configured != "":
		return Token{AccessToken: g.configured, TokenType: "bearer"}, nil
	case prev.AccessToken == "":
		return Token{}, g.consentError("the route is not connected to Viadeo yet")
	}
	return Token{}, g.consentError("Viadeo refused the token (revoked, or expired) and has no refresh")
}

// forAccount implements accountGrants: a member's token comes from consent
// (or the operator), never the route's VIADEO_ACCESS_TOKEN.
func (g *viadeoGrant) forAccount(consentPath string) Grant {
	a := *g
	a.configured = ""
	a.consentPath = consentPath
	a.account = true
	return &a
}

func (g *viadeoGrant) consentError(reason string) error {
	switch {
	case g.consentPath != "":
	case g.account:
		reason += "; add the account again (authsidecar accounts add), or set VIADEO_REDIRECT_URL to give consent through the sidecar"
	default:
		reason += "; set a new VIADEO_ACCESS_TOKEN, or VIADEO_REDIRECT_URL to give consent through the sidecar"
	}
	return &ConsentError{Reason: reason, StartPath: g.consentPath}
}

// Exchange implements Exchanger.
func (g *viadeoGrant) Exchange(ctx context.Context, code, redirectURL string) (Token, error) {
	return g.exchange.Exchange(ctx, code, redirectURL)
}

// Revoke implements Revoker with Viadeo's revoke_access_token2, whose
// parameters go in the query string.
func (g *viadeoGrant) Revoke(ctx context.Context, tok Token) error {
	if g.revokeURL == "" {
		return ErrNoRevocation
	}
	ep := g.exchange.Endpoint
	u, err := url.Parse(g.revokeURL)
	if err != nil {
		return fmt.Errorf("parsing revoke URL: %w", errors.Unwrap(err))
	}
	// Viadeo takes the client's credentials in the query string here:
	// the route's client authentication puts them in these members.
	q := u.Query()
	header := http.Header{}
	if ep.Auth != nil {
		if err := ep.Auth.Authenticate(ctx, g.revokeURL, header, q); err != nil {
			return fmt.Errorf("authenticating the client for revocation: %w", err)
		}
	}
	q.Set("redirect_uri", g.redirectURL)
	q.Set("access_token", tok.AccessToken)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building revoke request: %w", errors.Unwrap(err))
	}
	req.Header = header
	return doRevoke(ep.Client, req, g.revokeURL)
}

// doRevoke sends a revocation and reads only its status: Viadeo answers
// {"token_revoked"}, which is not even JSON.
func doRevoke(client *http.Client, req *http.Request, rawURL string) error {
	ans, err := roundTrip(client, req, "revoke endpoint", rawURL)
	if err != nil {
		return err
	}
	if ans.status/100 != 2 {
		return fmt.Errorf("revoke endpoint %s answered %d", safeURL(rawURL), ans.status)
	}
	return nil
}
