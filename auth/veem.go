package auth

import "net/url"

// Veem (payments), https://api.veem.com; the sandbox is
// VEEM_UPSTREAM_URL=https://sandbox-api.veem.com, and the auth endpoints
// follow the upstream.
//
// Client authentication is HTTP Basic with a form body and scope=all. The
// refresh request is Veem's own: the refresh token goes in the query string,
// grant_type=refresh_token in the body. A client-credentials answer may have
// no refresh token; then the next token comes by client credentials again.
func init() {
	registerPreset(Preset{
		Name: "veem",
		Defaults: Settings{
			UpstreamURL: "https://api.veem.com",
			Scope:       "all",
			ClientAuth:  "basic",
			TokenBody:   "form",
			Inject:      "header",
		},
		Grants: []GrantType{GrantStatic, GrantClientCredentials, GrantRefreshToken, GrantAuthorizationCode},
		Derive: func(s *Settings) {
			fillFrom(&s.TokenURL, under(s.UpstreamURL, "/oauth/token"))
			fillFrom(&s.AuthorizeURL, under(s.UpstreamURL, "/oauth/authorize"))
		},
		Check: clientCredentialsRequired,
		NewGrant: func(s Settings, ep *Endpoint, g GrantType) (Grant, error) {
			generic, err := genericGrant(s, ep, g)
			grant, ok := generic.(*OAuth2Grant)
			if err != nil || !ok {
				return generic, err
			}
			grant.BuildRefresh = func(prev Token) TokenRequest {
				return TokenRequest{
					URL:    grant.RefreshURL,
					Query:  url.Values{"refresh_token": {prev.RefreshToken}},
					Params: url.Values{"grant_type": {"refresh_token"}},
				}
			}
			return grant, nil
		},
	})
}
