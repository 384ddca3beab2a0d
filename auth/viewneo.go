package auth

// viewneo (digital signage), https://cloud.viewneo.com.
//
// A personal access token (VIEWNEO_ACCESS_TOKEN) is static: valid until the
// user deletes it. OAuth2 is the authorization code grant of a Laravel
// Passport server: token requests are JSON with the client credentials in
// the body, for the code exchange and the refresh alike; refresh tokens are
// single-use and rotate.
func init() {
	registerPreset(Preset{
		Name: "viewneo",
		Defaults: Settings{
			UpstreamURL: "https://cloud.viewneo.com",
			ClientAuth:  "body",
			TokenBody:   "json",
			Inject:      "header",
		},
		Grants: []GrantType{GrantStatic, GrantRefreshToken, GrantAuthorizationCode},
		Derive: func(s *Settings) {
			fillFrom(&s.TokenURL, under(s.UpstreamURL, "/oauth/token"))
			fillFrom(&s.AuthorizeURL, under(s.UpstreamURL, "/oauth/authorize"))
		},
		Check: clientCredentialsRequired,
	})
}
