// Package redact knows which names carry secrets: the query parameters the
// access log hides, the token-answer members a debug line hides.
package redact

import "strings"

// secretWords are parts of names that hold credentials.
var secretWords = []string{"token", "secret", "pass", "key", "code", "auth", "sig", "session", "credential", "jwt", "bearer", "assertion"}

// SecretName reports whether a parameter or member called name may hold a
// credential, by the words it contains, in any case.
func SecretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}
