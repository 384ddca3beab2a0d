package proxy

import (
	"context"
	"fmt"
	"net/http"

	"github.com/authsidecar/authsidecar/auth"
)

// AccountHeader picks which of a route's vendor accounts a call uses; no
// header is the route's configured account. It is never forwarded.
const AccountHeader = "X-Authsidecar-Account"

type accountKey struct{}

// WithAccount is ctx carrying the account a call asked for.
func WithAccount(ctx context.Context, account string) context.Context {
	return context.WithValue(ctx, accountKey{}, account)
}

// AccountFrom is the account a call asked for; false for the route's own.
func AccountFrom(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(accountKey{}).(string)
	return a, ok
}

// accountOf reads the call's account header. More than one header, or a
// name outside 1–64 characters of [A-Za-z0-9._@-], is refused: a caller
// never reaches an account by a spelling the store would read differently.
func accountOf(r *http.Request) (account string, asked bool, err error) {
	values := r.Header.Values(AccountHeader)
	switch {
	case len(values) == 0:
		return "", false, nil
	case len(values) > 1:
		return "", true, fmt.Errorf("%s is given %d times; give it once", AccountHeader, len(values))
	case !auth.ValidAccount(values[0]):
		return "", true, fmt.Errorf("%s must be 1-64 characters of letters, digits and . _ @ -", AccountHeader)
	}
	return values[0], true, nil
}
