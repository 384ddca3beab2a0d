package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/internal/metrics"
)

// AddAccount imports account name on route with an operator's token: a
// refresh token, or with accessOnly an access token (served until it is
// refused, then the account needs consent).
func (a *App) AddAccount(ctx context.Context, route, name, token string, accessOnly bool) error {
	rt, ok := a.routes.Get(route)
	if !ok {
		return a.routes.Unknown(route)
	}
	if err := auth.CheckAccountName(name); err != nil {
		return err
	}
	if token == "" {
		return fmt.Errorf("account %s: no token on standard input", name)
	}
	tok := auth.Token{RefreshToken: token}
	if accessOnly {
		tok = auth.Token{AccessToken: token}
	} else {
		// An expired access token makes the first call refresh.
		tok.Expiry = a.clock.Now().Add(-1)
	}
	return rt.Accounts.Add(ctx, name, tok)
}

// ListAccounts is route's accounts, sorted.
func (a *App) ListAccounts(ctx context.Context, route string) ([]string, error) {
	rt, ok := a.routes.Get(route)
	if !ok {
		return nil, a.routes.Unknown(route)
	}
	if !rt.Accounts.Enabled() {
		return nil, fmt.Errorf("route %s: %w", route, auth.ErrNoAccounts)
	}
	return rt.Accounts.List(ctx)
}

// RevokeAccount revokes account name's token at the vendor and removes the
// account. revoked is false when the route has no revocation endpoint: the
// account is removed all the same, and the vendor still honours its grant.
func (a *App) RevokeAccount(ctx context.Context, route, name string) (revoked bool, err error) {
	rt, ok := a.routes.Get(route)
	if !ok {
		return false, a.routes.Unknown(route)
	}
	k, err := rt.Accounts.Keeper(ctx, name)
	if err != nil {
		return false, err
	}
	if revoker, ok := rt.Grant.(auth.Revoker); ok {
		if tok, err := k.Token(ctx); err == nil {
			err = revoker.Revoke(ctx, tok)
			switch {
			case err == nil:
				revoked = true
			case !errors.Is(err, auth.ErrNoRevocation):
				return false, fmt.Errorf("route %s, account %s: %w", route, name, err)
			}
		}
	}
	return revoked, rt.Accounts.Remove(ctx, name)
}

// accountCounts is every route's accounts, for the gauges: read from the
// store, briefly, at each scrape.
func (a *App) accountCounts() []metrics.AccountCount {
	var counts []metrics.AccountCount
	for _, rt := range a.routes.All() {
		if !rt.Accounts.Enabled() {
			continue
		}
		c := metrics.AccountCount{Route: rt.Name, Held: rt.Accounts.Live()}
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StoreTimeout)
		names, err := rt.Accounts.List(ctx)
		cancel()
		c.Stored, c.StoredKnown = len(names), err == nil
		counts = append(counts, c)
	}
	return counts
}
