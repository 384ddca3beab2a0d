package auth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ErrorKind says what a caller of the sidecar should make of a failure to
// get a token.
type ErrorKind int

const (
	// Unavailable: the token endpoint is down, slow or answering garbage.
	// Likely to pass; the caller may retry.
	Unavailable ErrorKind = iota
	// Rejected: the token endpoint refused our credentials. Retrying will
	// not help until an operator fixes them.
	Rejected
	// ConsentRequired: the route needs a person to authorize it again.
	ConsentRequired
)

func (k ErrorKind) String() string {
	switch k {
	case Rejected:
		return "rejected"
	case ConsentRequired:
		return "consent_required"
	default:
		return "unavailable"
	}
}

// RetrieveError is a token endpoint's refusal, with the RFC 6749 section 5.2
// fields kept as data. It never holds the request or the full answer body,
// which could carry secrets.
type RetrieveError struct {
	StatusCode int
	Code       string // RFC 6749 "error", such as invalid_grant
	// Description is the vendor's "error_description", shortened. It is the
	// vendor's free text and may quote what was sent, a secret included:
	// it is kept for debug logs and never in Error, which callers and
	// /readyz see.
	Description string
	// Problem is the sidecar's own words on an answer it could not read.
	Problem string
}

func (e *RetrieveError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "answered %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Problem != "" {
		b.WriteString(": ")
		b.WriteString(e.Problem)
	}
	return b.String()
}

// Kind classifies the refusal: a 4xx naming bad credentials or grant is a
// rejection; anything else (5xx, 429, a gateway's HTML) may pass.
func (e *RetrieveError) Kind() ErrorKind {
	switch e.Code {
	case "invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope", "unsupported_grant_type", "access_denied":
		return Rejected
	}
	if e.StatusCode == 401 || e.StatusCode == 403 || e.StatusCode == 400 {
		return Rejected
	}
	return Unavailable
}

// invalidGrant reports whether err says the grant (a refresh token, a code)
// is no longer good, the answer a rotated-away refresh token gets.
func invalidGrant(err error) bool {
	var re *RetrieveError
	return errors.As(err, &re) && re.Code == "invalid_grant"
}

// FetchError is the failure of a route's keeper to produce a token: what the
// proxy turns into the caller's JSON error.
type FetchError struct {
	Route string
	Kind  ErrorKind
	// RetryAfter is when the keeper will try again; zero when unknown.
	RetryAfter time.Time
	Err        error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("getting token for route %s: %v", e.Route, e.Err)
}

func (e *FetchError) Unwrap() error { return e.Err }

// KindOf classifies any error from a grant.
func KindOf(err error) ErrorKind {
	var fe *FetchError
	if errors.As(err, &fe) {
		return fe.Kind
	}
	var ce *ConsentError
	if errors.As(err, &ce) {
		return ConsentRequired
	}
	var re *RetrieveError
	if errors.As(err, &re) {
		return re.Kind()
	}
	return Unavailable
}

// ConsentError says a route has no usable grant until a person authorizes it.
type ConsentError struct {
	Reason string
	// StartPath is where consent can be given, when the sidecar serves it.
	StartPath string
}

func (e *ConsentError) Error() string {
	if e.StartPath != "" {
		return e.Reason + "; give consent at " + e.StartPath
	}
	return e.Reason
}

// safeURL is u without its query and user info, which may hold secrets (Veem
// puts the refresh token in the query string).
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}
