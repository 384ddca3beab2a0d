package auth

// The generic preset: any RFC 6749 server. Nothing is assumed but the RFC's
// own defaults, Basic client authentication and a form body.
func init() {
	registerPreset(Preset{
		Name: "oauth2",
		Defaults: Settings{
			ClientAuth: "basic",
			TokenBody:  "form",
			Inject:     "header",
		},
	})
}
