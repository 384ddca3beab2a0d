package auth

import (
	"context"
	"time"
)

// Tokens that reach a Keeper from outside its refreshes: a person's consent,
// an operator's revocation, a store that came back.

// Resync writes the token held back to the store, after the store was down:
// siblings see it again without waiting for the next refresh.
func (k *Keeper) Resync(ctx context.Context) error {
	k.mu.Lock()
	tok := k.cur
	// A token whose access token expired is still worth writing back while
	// it has a refresh token: it may be the newest the fleet has.
	ok := k.servable(tok, k.cfg.Clock.Now()) || tok.RefreshToken != ""
	k.mu.Unlock()
	if !ok {
		return nil
	}
	return k.cfg.Source.Resync(ctx, tok)
}

// Store writes tok as the route's token, as the consent flow does after a
// code exchange, and serves it from now on.
func (k *Keeper) Store(ctx context.Context, tok Token) error {
	if tok.Obtained.IsZero() {
		tok.Obtained = k.cfg.Clock.Now()
	}
	if err := k.cfg.Source.Save(ctx, tok); err != nil {
		return err
	}
	k.install(tok)
	return nil
}

// install serves tok from now on, as a token a person just gave.
func (k *Keeper) install(tok Token) {
	k.mu.Lock()
	k.cur, k.rejected, k.failures, k.lastErr, k.retryAt = tok, "", 0, nil, time.Time{}
	k.mu.Unlock()
	k.cfg.Observer.TokenExpiry(k.cfg.Route, tok.Expiry)
}

// Connection names the token the route's store holds (see
// Fleet.Fingerprint), for the consent flow.
func (k *Keeper) Connection(ctx context.Context) (string, error) {
	return k.cfg.Source.Fingerprint(ctx)
}

// StoreIfUnchanged is Store, done only while the stored token is still the
// one Connection named: consent started for an unconnected route must not
// replace a connection made meanwhile. It reports whether it stored.
func (k *Keeper) StoreIfUnchanged(ctx context.Context, tok Token, connection string) (bool, error) {
	if tok.Obtained.IsZero() {
		tok.Obtained = k.cfg.Clock.Now()
	}
	saved, err := k.cfg.Source.SaveIfUnchanged(ctx, tok, connection)
	if err != nil || !saved {
		return false, err
	}
	k.install(tok)
	return true, nil
}

// Forget drops the route's token from memory and the store, after it was
// revoked.
func (k *Keeper) Forget(ctx context.Context) error {
	k.mu.Lock()
	k.cur, k.rejected = Token{}, ""
	k.mu.Unlock()
	k.cfg.Observer.TokenExpiry(k.cfg.Route, time.Time{})
	return k.cfg.Source.Forget(ctx)
}
