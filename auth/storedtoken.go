package auth

import (
	"encoding/json"
	"fmt"
	"time"
)

// The stored-token codec: how a Token is kept in a cache.Store. The store
// seals what leaves the process; this only encodes.

func encodeStoredToken(tok Token) ([]byte, error) {
	raw, err := json.Marshal(tok)
	if err != nil {
		return nil, fmt.Errorf("encoding token: %w", err)
	}
	return raw, nil
}

func decodeStoredToken(raw []byte) (Token, error) {
	var tok Token
	if err := json.Unmarshal(raw, &tok); err != nil {
		return Token{}, fmt.Errorf("decoding stored token: %w", err)
	}
	return tok, nil
}

// storedTTL is how long a stored token is worth keeping: a token with a
// refresh token outlives its access token (zero: no expiry); one without is
// useless once expired (keep reports false when it already is).
func storedTTL(tok Token, now time.Time) (ttl time.Duration, keep bool) {
	if tok.RefreshToken != "" || tok.Expiry.IsZero() {
		return 0, true
	}
	ttl = tok.Expiry.Sub(now)
	return ttl, ttl > 0
}

// refreshDue reports whether t should be refreshed at now: within margin of
// its expiry, the margin being at most half its lifetime, so short-lived
// tokens are not refreshed on every call.
func refreshDue(t Token, now time.Time, margin time.Duration) bool {
	if t.Expiry.IsZero() {
		return false
	}
	if !t.Obtained.IsZero() {
		if half := t.Expiry.Sub(t.Obtained) / 2; half < margin {
			margin = half
		}
	}
	return !now.Before(t.Expiry.Add(-margin))
}
