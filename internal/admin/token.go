// Package admin is what only the operator may do over HTTP: the admin
// token that guards it, and the API for a route's accounts.
package admin

import (
	"crypto/subtle"
	"net/http"
	"sync/atomic"
)

// TokenHeader carries the operator's ADMIN_TOKEN for programs.
const TokenHeader = "X-Authsidecar-Admin-Token"

// Token is the operator's ADMIN_TOKEN, which may change while the sidecar
// serves (its file changed).
type Token struct{ v atomic.Pointer[string] }

// NewToken holds token; empty: none configured.
func NewToken(token string) *Token {
	t := &Token{}
	t.Set(token)
	return t
}

// Set replaces the token.
func (t *Token) Set(token string) { t.v.Store(&token) }

// Configured reports whether the operator set a token.
func (t *Token) Configured() bool { return *t.v.Load() != "" }

// Presented reports whether r carries the token, as the Basic password (a
// browser asks for it) or in TokenHeader; false when none is configured.
// Never from the query string: it would end up in history, logs and
// Referer headers.
func (t *Token) Presented(r *http.Request) bool {
	want := *t.v.Load()
	presented := r.Header.Get(TokenHeader)
	if _, pass, ok := r.BasicAuth(); ok {
		presented = pass
	}
	return want != "" && presented != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(want)) == 1
}
