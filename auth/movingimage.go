package auth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// movingimage VideoManager Pro (video), https://api.video-cdn.net. Customers
// on their own domain set MOVINGIMAGE_UPSTREAM_URL and the auth URLs follow.
//
// The legacy login (the default) is a JSON {"username","password"} POST
// that answers in camelCase with no expiry: both tokens are JWTs whose exp
// says when they die (5 minutes and 1 hour). The refresh is
// POST /v1/vms/auth/refresh/{videoManagerId} with {"refreshToken"}; once the
// refresh token has expired, the grant logs in again with the password.
// MOVINGIMAGE_VIDEOMANAGER_ID picks the VideoManager the token is for; by
// default it is the one the login answer names.
//
// MOVINGIMAGE_AUTH=oidc uses their OpenID Connect endpoint instead: the
// password grant of RFC 6749 for the public client "anonymous", form body.
const (
	movingimageRefreshPath = "/v1/vms/auth/refresh/{videoManagerId}"
	movingimageOIDCURL     = "https://login.movingimage.com/auth/realms/platform/protocol/openid-connect/token"
	videoManagerField      = "validForVideoManager"
)

func init() {
	registerPreset(Preset{
		Name: "movingimage",
		Defaults: Settings{
			UpstreamURL: "https://api.video-cdn.net",
			Grant:       string(GrantPassword),
			Inject:      "header",
		},
		Options: []string{"VIDEOMANAGER_ID", "AUTH"},
		// A token is for one VideoManager.
		Account: func(s Settings) string { return s.Options["VIDEOMANAGER_ID"] },
		Grants:  []GrantType{GrantStatic, GrantPassword},
		Derive: func(s *Settings) {
			if s.Options["AUTH"] == "oidc" {
				fillFrom(&s.TokenURL, movingimageOIDCURL)
				fillFrom(&s.ClientID, "anonymous")
				fillFrom(&s.ClientAuth, "none")
				fillFrom(&s.TokenBody, "form")
				fillFrom(&s.Scope, "openid")
				return
			}
			fillFrom(&s.TokenURL, under(s.UpstreamURL, "/v1/vms/auth/login"))
			fillFrom(&s.RefreshURL, under(s.UpstreamURL, movingimageRefreshPath))
			fillFrom(&s.TokenBody, "json")
		},
		Check: func(s Settings, g GrantType) error {
			switch s.Options["AUTH"] {
			case "", "legacy", "oidc":
				return nil
			}
			return settingErr("AUTH", "unknown movingimage auth %q (want legacy or oidc)", s.Options["AUTH"])
		},
		NewGrant: func(s Settings, ep *Endpoint, g GrantType) (Grant, error) {
			if g != GrantPassword || s.Options["AUTH"] == "oidc" {
				return nil, nil // the generic grant speaks OIDC
			}
			ep.Auth = nil // the login authenticates by username and password alone
			ep.Fields = Fields{AccessToken: "accessToken", RefreshToken: "refreshToken", Extra: []string{videoManagerField}}
			return &movingimageGrant{
				endpoint: ep, loginURL: s.TokenURL, refreshURL: s.RefreshURL,
				username: s.Username, password: s.Password, videoManagerID: s.Options["VIDEOMANAGER_ID"],
			}, nil
		},
	})
}

type movingimageGrant struct {
	endpoint           *Endpoint
	loginURL           string
	refreshURL         string // may hold {videoManagerId}
	username, password string
	videoManagerID     string // configured; empty: the login answer's
}

// Fetch implements Grant.
func (g *movingimageGrant) Fetch(ctx context.Context, prev Token) (Token, error) {
	if prev.CanRefresh(g.endpoint.Clock.Now()) {
		tok, err := g.refresh(ctx, prev, g.targetVideoManager(prev))
		if err == nil || KindOf(err) != Rejected {
			return tok, err
		}
		// The refresh token was refused: start over with the password.
	}
	tok, err := g.endpoint.Do(ctx, TokenRequest{
		URL:          g.loginURL,
		Params:       url.Values{"username": {g.username}, "password": {g.password}},
		NoClientAuth: true,
	})
	if err != nil {
		return Token{}, fmt.Errorf("logging in to movingimage: %w", err)
	}
	if g.videoManagerID != "" && tok.Extra[videoManagerField] != g.videoManagerID {
		// The login picked another VideoManager; the refresh call
		// switches the token to the one configured.
		return g.refresh(ctx, tok, g.videoManagerID)
	}
	return tok, nil
}

func (g *movingimageGrant) targetVideoManager(prev Token) string {
	if g.videoManagerID != "" {
		return g.videoManagerID
	}
	return prev.Extra[videoManagerField]
}

func (g *movingimageGrant) refresh(ctx context.Context, prev Token, videoManagerID string) (Token, error) {
	target := g.refreshURL
	if strings.Contains(target, "{videoManagerId}") {
		if videoManagerID == "" {
			return Token{}, errors.New("refreshing movingimage token: no VideoManager id (set MOVINGIMAGE_VIDEOMANAGER_ID)")
		}
		target = strings.ReplaceAll(target, "{videoManagerId}", url.PathEscape(videoManagerID))
	}
	tok, err := g.endpoint.Do(ctx, TokenRequest{
		URL:          target,
		Params:       url.Values{"refreshToken": {prev.RefreshToken}},
		NoClientAuth: true,
	})
	if err != nil {
		return Token{}, fmt.Errorf("refreshing movingimage token: %w", err)
	}
	return tok.keepingRefreshToken(prev), nil
}
