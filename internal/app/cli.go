package app

import (
	"context"
	"fmt"
	"io"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/internal/consent"
)

// The operator's commands: each reads the same route table the sidecar
// serves from.

// PrintToken writes a current access token of route, for a tool that can
// only take one.
func (a *App) PrintToken(ctx context.Context, route string, w io.Writer) error {
	rt, ok := a.routes.Get(route)
	if !ok {
		return a.routes.Unknown(route)
	}
	if r, rotates := rt.Grant.(auth.Rotating); rotates && r.RotatesRefreshTokens() && a.storeKind == "memory" {
		// This process's store is its own: a refresh here would present
		// the refresh token a running sidecar holds too, and the vendor
		// would revoke it.
		return fmt.Errorf("route %s's refresh tokens rotate, and this command shares no token store with a running sidecar: "+
			"refreshing here could get them revoked. Set REDIS_URL (the sidecar's), or TOKEN_STORE_PATH while no sidecar uses it, and run it again", route)
	}
	tok, err := rt.Keeper.Token(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, tok.AccessToken)
	return err
}

// Revoke revokes route's current token at the vendor and forgets it.
func (a *App) Revoke(ctx context.Context, route string) error {
	rt, ok := a.routes.Get(route)
	if !ok {
		return a.routes.Unknown(route)
	}
	revoker, ok := rt.Grant.(auth.Revoker)
	if !ok {
		return fmt.Errorf("route %s: its grant has no revocation", route)
	}
	tok, err := rt.Keeper.Token(ctx)
	if err != nil {
		return fmt.Errorf("route %s: getting the token to revoke: %w", route, err)
	}
	if err := revoker.Revoke(ctx, tok); err != nil {
		return fmt.Errorf("route %s: %w", route, err)
	}
	rt.Keeper.Invalidate(tok.AccessToken)
	return rt.Keeper.Forget(ctx)
}

// Login runs route's consent flow from a terminal (see consent.Login), for
// the route's own connection or, with account, one of its accounts.
func (a *App) Login(ctx context.Context, route, account string, out io.Writer) error {
	rt, ok := a.routes.Get(route)
	if !ok {
		return a.routes.Unknown(route)
	}
	if rt.Consent == nil {
		return fmt.Errorf("route %s has no consent flow: set %sREDIRECT_URL (and the client's credentials)", route, rt.Prefix)
	}
	kept := ""
	switch a.storeKind {
	case "file":
		kept = "TOKEN_STORE_PATH (" + a.cfg.TokenStorePath + ")"
	case "redis":
		kept = "Redis (REDIS_URL)"
	}
	return consent.Login(ctx, rt.Consent, account, rt.Prefix, kept, out)
}
