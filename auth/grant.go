package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
)

// Grant gets a new token. It is the one thing a vendor preset must supply.
type Grant interface {
	// Fetch returns a new token. prev is the token held now, possibly
	// expired or empty; a grant that can refresh uses prev.RefreshToken.
	Fetch(ctx context.Context, prev Token) (Token, error)
}

// GrantType names the OAuth2 grants of RFC 6749, plus static for a token
// that is configured, not fetched.
type GrantType string

const (
	GrantStatic            GrantType = "static"
	GrantClientCredentials GrantType = "client_credentials"
	GrantPassword          GrantType = "password"
	GrantRefreshToken      GrantType = "refresh_token"
	GrantAuthorizationCode GrantType = "authorization_code"
	// GrantJWTBearer presents an assertion (RFC 7523 section 2.1).
	GrantJWTBearer GrantType = "jwt_bearer"
	// GrantTokenExchange trades a subject token (RFC 8693).
	GrantTokenExchange GrantType = "token_exchange"
)

// parseGrantType reads the GRANT setting.
func parseGrantType(s string) (GrantType, error) {
	switch g := GrantType(s); g {
	case GrantStatic, GrantClientCredentials, GrantPassword, GrantRefreshToken, GrantAuthorizationCode, GrantJWTBearer, GrantTokenExchange:
		return g, nil
	}
	return "", fmt.Errorf("unknown grant %q (want static, client_credentials, password, refresh_token, authorization_code, jwt_bearer or token_exchange)", s)
}

// StaticGrant serves a token that was configured and cannot be refreshed,
// such as viewneo's personal access token.
type StaticGrant struct{ AccessToken string }

// Fetch implements Grant.
func (g StaticGrant) Fetch(context.Context, Token) (Token, error) {
	return Token{AccessToken: g.AccessToken, TokenType: "Bearer"}, nil
}

// OAuth2Grant is RFC 6749 spoken in an Endpoint's dialect: it refreshes while
// it holds a refresh token, and otherwise (or when the refresh token is
// refused) starts over with its primary credentials.
type OAuth2Grant struct {
	Type     GrantType
	Endpoint *Endpoint
	TokenURL string
	// RefreshURL is where refresh requests go, when not TokenURL.
	RefreshURL string
	Scope      string
	// Audience and Resource (RFC 8707) go with the client_credentials and
	// password requests when set: Auth0 and others issue a token for the
	// API named so, and refuse or default without it.
	Audience, Resource string
	Username           string
	Password           string
	// RefreshToken is the configured refresh token, used until the keeper
	// holds a newer one.
	RefreshToken string
	// RevokeURL is where Revoke sends RFC 7009 revocations.
	RevokeURL string
	// ConsentPath is where a person can authorize the route, for errors.
	ConsentPath string
	// BuildRefresh, when set, shapes the refresh request for vendors that
	// do not follow RFC 6749 section 6.
	BuildRefresh func(prev Token) TokenRequest
	// BuildPrimary, when set, shapes the primary request (a login, an
	// assertion, a token exchange); it may read files, and fail.
	BuildPrimary func() (TokenRequest, error)
}

// Fetch implements Grant.
func (g *OAuth2Grant) Fetch(ctx context.Context, prev Token) (Token, error) {
	now := g.Endpoint.Clock.Now()
	if prev.RefreshToken == "" && g.RefreshToken != "" {
		prev.RefreshToken = g.RefreshToken
	}
	var refreshErr error
	if prev.CanRefresh(now) {
		origin := prev.Extra[seedField]
		if g.RefreshToken != "" && prev.RefreshToken == g.RefreshToken {
			origin = seedOf(g.RefreshToken)
		}
		tok, err := g.refresh(ctx, prev)
		if err != nil && KindOf(err) == Rejected && g.newConfiguredRefreshToken(prev) {
			// A refresh token put in the configuration (a new
			// REFRESH_TOKEN_FILE, say) after the refused chain began: it was
			// never presented, so it may be now.
			origin = seedOf(g.RefreshToken)
			tok, err = g.refresh(ctx, Token{RefreshToken: g.RefreshToken})
		}
		if err == nil {
			return withSeed(tok, origin), nil
		}
		if !g.hasPrimary() || KindOf(err) != Rejected {
			return Token{}, err
		}
		// The refresh token is dead but we hold credentials to start over.
		refreshErr = err
	}
	if !g.hasPrimary() {
		if g.Type == GrantAuthorizationCode || g.Type == GrantRefreshToken {
			return Token{}, &ConsentError{Reason: "no usable refresh token; the route needs authorization", StartPath: g.ConsentPath}
		}
		return Token{}, fmt.Errorf("grant %s has no credentials to get a token with", g.Type)
	}
	tok, err := g.primary(ctx)
	if err != nil && refreshErr != nil {
		return Token{}, fmt.Errorf("refresh refused (%v), then: %w", refreshErr, err)
	}
	return tok, err
}

// seedField marks, in a token's Extra, the configured refresh token its
// chain of refreshes began from (a digest, not the token), so that a new
// configured one is told from one already presented and rotated away.
const seedField = "authsidecar.refresh_seed"

func seedOf(refreshToken string) string {
	sum := sha256.Sum256([]byte("authsidecar refresh seed\x00" + refreshToken))
	return hex.EncodeToString(sum[:8])
}

// newConfiguredRefreshToken reports whether the configured refresh token is
// not the one prev's chain began from. A chain from before the mark existed
// counts as new only once refused, which is when this is asked.
func (g *OAuth2Grant) newConfiguredRefreshToken(prev Token) bool {
	return g.RefreshToken != "" && prev.RefreshToken != g.RefreshToken && prev.Extra[seedField] != seedOf(g.RefreshToken)
}

// withSeed records which configured refresh token tok's chain began from
// (origin; empty when none or not known).
func withSeed(tok Token, origin string) Token {
	if origin == "" || tok.RefreshToken == "" {
		return tok
	}
	extra := make(map[string]string, len(tok.Extra)+1)
	for k, v := range tok.Extra {
		extra[k] = v
	}
	extra[seedField] = origin
	tok.Extra = extra
	return tok
}

// RotatesRefreshTokens implements Rotating: a grant that lives on its
// refresh token alone may be on a vendor that makes each one single-use. A
// grant with primary credentials can always start over.
func (g *OAuth2Grant) RotatesRefreshTokens() bool { return !g.hasPrimary() }

func (g *OAuth2Grant) hasPrimary() bool {
	switch g.Type {
	case GrantClientCredentials, GrantPassword, GrantJWTBearer, GrantTokenExchange:
		return true
	}
	return false
}

func (g *OAuth2Grant) refresh(ctx context.Context, prev Token) (Token, error) {
	req := TokenRequest{URL: g.RefreshURL}
	if g.BuildRefresh != nil {
		req = g.BuildRefresh(prev)
	} else {
		req.Params = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {prev.RefreshToken}}
	}
	if req.URL == "" {
		req.URL = g.TokenURL
	}
	tok, err := g.Endpoint.Do(ctx, req)
	if err != nil {
		return Token{}, fmt.Errorf("refreshing: %w", err)
	}
	return tok.keepingRefreshToken(prev), nil
}

func (g *OAuth2Grant) primary(ctx context.Context) (Token, error) {
	var req TokenRequest
	if g.BuildPrimary != nil {
		var err error
		if req, err = g.BuildPrimary(); err != nil {
			return Token{}, fmt.Errorf("%s grant: %w", g.Type, err)
		}
	} else {
		req.Params = url.Values{"grant_type": {string(g.Type)}}
		if g.Type == GrantPassword {
			req.Params.Set("username", g.Username)
			req.Params.Set("password", g.Password)
		}
		setGiven(req.Params, map[string]string{"scope": g.Scope, "audience": g.Audience, "resource": g.Resource})
	}
	if req.URL == "" {
		req.URL = g.TokenURL
	}
	tok, err := g.Endpoint.Do(ctx, req)
	if err != nil {
		return Token{}, fmt.Errorf("%s grant: %w", g.Type, err)
	}
	return tok, nil
}

// setGiven sets the optional parameters that have a value.
func setGiven(params url.Values, optional map[string]string) {
	for k, v := range optional {
		if v != "" {
			params.Set(k, v)
		}
	}
}

// Exchange trades an authorization code for tokens (RFC 6749 section 4.1.3).
func (g *OAuth2Grant) Exchange(ctx context.Context, code, redirectURL string) (Token, error) {
	if code == "" {
		return Token{}, errors.New("exchanging authorization code: no code")
	}
	params := url.Values{
		"grant_type":   {string(GrantAuthorizationCode)},
		"code":         {code},
		"redirect_uri": {redirectURL},
	}
	if g.Scope != "" {
		params.Set("scope", g.Scope)
	}
	tok, err := g.Endpoint.Do(ctx, TokenRequest{URL: g.TokenURL, Params: params})
	if err != nil {
		return Token{}, fmt.Errorf("exchanging authorization code: %w", err)
	}
	return tok, nil
}

// Exchanger is a grant that can trade an authorization code for tokens: the
// consent flow needs one.
type Exchanger interface {
	Exchange(ctx context.Context, code, redirectURL string) (Token, error)
}

// Revoker is a grant that can revoke a token at the vendor.
// ErrNoRevocation says a route has nowhere to send revocations.
var ErrNoRevocation = errors.New("no revoke URL configured (set the route's REVOKE_URL)")

type Revoker interface {
	Revoke(ctx context.Context, tok Token) error
}

// Revoke sends an RFC 7009 revocation of the refresh token (or, without
// one, the access token) to RevokeURL.
func (g *OAuth2Grant) Revoke(ctx context.Context, tok Token) error {
	if g.RevokeURL == "" {
		return ErrNoRevocation
	}
	token, hint := tok.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = tok.AccessToken, "access_token"
	}
	ans, _, err := g.Endpoint.send(ctx, TokenRequest{URL: g.RevokeURL, Params: url.Values{"token": {token}, "token_type_hint": {hint}}})
	if err != nil {
		return fmt.Errorf("revoking token: %w", err)
	}
	if ans.status/100 != 2 {
		_, perr := parseTokenResponse(ans.status, ans.contentType, ans.body, standardFields, g.Endpoint.Clock.Now())
		return fmt.Errorf("revoking token: revoke endpoint %s: %w", safeURL(g.RevokeURL), perr)
	}
	return nil
}

// Rotating is a grant that can say whether its refresh tokens are
// single-use, which forbids refreshing without the fleet's lock.
type Rotating interface {
	RotatesRefreshTokens() bool
}
