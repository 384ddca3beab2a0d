package auth

import (
	"errors"
	"fmt"
	"regexp"
)

// Accounts: one route, many vendor accounts (a vendor's three-legged flow
// on behalf of several users). Each account is a chain of refresh tokens of
// its own, obtained by consent or imported by an operator; the route's
// client credentials authenticate every account's refreshes.

// accountName is what X-Authsidecar-Account and the account commands take.
var accountName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// ValidAccount reports whether name can name an account: 1–64 characters of
// letters, digits and . _ @ -.
func ValidAccount(name string) bool { return accountName.MatchString(name) }

// CheckAccountName is ValidAccount as an error that says the rule.
func CheckAccountName(name string) error {
	if !ValidAccount(name) {
		return fmt.Errorf("account %q: names are 1-64 characters of letters, digits and . _ @ -", name)
	}
	return nil
}

// ErrNoAccounts is the answer for a route whose grant cannot have accounts.
var ErrNoAccounts = errors.New("the route's grant has no accounts (they need an OAuth2 grant)")

// UnknownAccountError says a call named an account the route does not have.
type UnknownAccountError struct{ Route, Account string }

func (e *UnknownAccountError) Error() string {
	return fmt.Sprintf("route %s has no account %q", e.Route, e.Account)
}

// AccountGrant is g made for one account, whose token consent or the
// operator gives: an error when g's kind of grant has no accounts.
func AccountGrant(g Grant, consentPath string) (Grant, error) {
	m, ok := g.(accountGrants)
	if !ok {
		return nil, fmt.Errorf("the route's grant (%T) has no accounts: accounts need an OAuth2 grant", g)
	}
	return m.forAccount(consentPath), nil
}

// accountGrants is a grant that can serve accounts.
type accountGrants interface {
	// forAccount is the grant of one account: it lives on the account's
	// own tokens, and its consent errors point at consentPath.
	forAccount(consentPath string) Grant
}

// forAccount implements accountGrants: the account lives on its refresh
// token alone. The route's configured refresh token and its primary
// credentials (client credentials, a password, an assertion) are the
// route's own account and never stand in for another: an account whose
// refresh token is dead needs consent again.
func (g *OAuth2Grant) forAccount(consentPath string) Grant {
	a := *g
	a.Type = GrantRefreshToken
	a.RefreshToken = ""
	a.Username, a.Password = "", ""
	a.BuildPrimary = nil
	a.ConsentPath = consentPath
	return &a
}

// StoreKeyForAccount is where an account's token is kept, beside the
// route's own (routeKey): the account's name is part of the key, never a
// secret.
func StoreKeyForAccount(routeKey, account string) string { return routeKey + ":account:" + account }
