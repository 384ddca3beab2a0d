// Package auth gets access tokens: the grants of RFC 6749, the wire dialects
// vendors speak, and a Keeper per route that keeps a token fresh.
package auth

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Token is what a token endpoint gave us. Its String method hides the
// secrets, so a Token that reaches a log line by mistake leaks nothing.
type Token struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"` // zero: unknown, treated as not expiring
	// RefreshExpiry is when the refresh token stops working, when the vendor
	// says so; past it, a grant with primary credentials starts over.
	RefreshExpiry time.Time `json:"refresh_expiry,omitzero"`
	// Obtained is when the token was issued to us; with Expiry it gives the
	// token's lifetime, which bounds how early it is refreshed.
	Obtained time.Time `json:"obtained,omitzero"`
	// Extra keeps non-secret fields of the answer a preset needs later,
	// such as the account a token is valid for.
	Extra map[string]string `json:"extra,omitempty"`
}

// String describes the token without revealing it.
func (t Token) String() string {
	var b strings.Builder
	b.WriteString("Token{access:")
	b.WriteString(redacted(t.AccessToken))
	b.WriteString(" refresh:")
	b.WriteString(redacted(t.RefreshToken))
	if !t.Expiry.IsZero() {
		b.WriteString(" expiry:")
		b.WriteString(t.Expiry.UTC().Format(time.RFC3339))
	}
	b.WriteString("}")
	return b.String()
}

// GoString keeps %#v from printing the fields.
func (t Token) GoString() string { return t.String() }

func redacted(s string) string {
	if s == "" {
		return "none"
	}
	return "[redacted]"
}

// Valid reports whether the token can be sent at now: it has an access token
// and has not expired.
func (t Token) Valid(now time.Time) bool {
	return t.AccessToken != "" && (t.Expiry.IsZero() || now.Before(t.Expiry))
}

// CanRefresh reports whether the refresh token can still be used at now.
func (t Token) CanRefresh(now time.Time) bool {
	return t.RefreshToken != "" && (t.RefreshExpiry.IsZero() || now.Before(t.RefreshExpiry))
}

// keepingRefreshToken is a refresh's answer completed from the token it
// refreshed: RFC 6749 section 6 lets the server leave the refresh token out,
// and then the old one stays good.
func (t Token) keepingRefreshToken(prev Token) Token {
	if t.RefreshToken == "" {
		t.RefreshToken, t.RefreshExpiry = prev.RefreshToken, prev.RefreshExpiry
	}
	return t
}

// jwtExpiry reads the exp claim of a JWT without verifying it: the token is
// ours and the vendor verifies it; we only need to know when it dies. It
// returns the zero time when s is not a JWT or has no exp.
func jwtExpiry(s string) time.Time {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[1]) > 64<<10 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 || exp > 1e11 {
		return time.Time{}
	}
	sec := int64(exp)
	return time.Unix(sec, int64((exp-float64(sec))*1e9))
}
