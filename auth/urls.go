package auth

import "strings"

// under joins a path to a base URL, for presets whose auth endpoints live on
// the API's own host (and so move with it to a customer's domain or a
// sandbox).
func under(base, path string) string {
	if base == "" {
		return ""
	}
	return strings.TrimSuffix(base, "/") + path
}

// fillFrom sets *v to def when empty.
func fillFrom(v *string, def string) {
	if *v == "" {
		*v = def
	}
}

// clientCredentialsRequired is a Check for vendors that authenticate the
// client on every token request.
func clientCredentialsRequired(s Settings, g GrantType) error {
	if g == GrantStatic {
		return nil
	}
	return requireSettings(g, [2]string{"CLIENT_ID", s.ClientID}, [2]string{"CLIENT_SECRET", s.ClientSecret})
}
