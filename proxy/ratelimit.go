package proxy

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Limiter holds a route's calls back from its upstream: a cool-down the
// vendor asked for, and a rate of the operator's own.
type Limiter interface {
	// Admit returns when the call may go (waiting, within the route's
	// bound) or a *RateLimitedError when it must not; account is the
	// call's ("" for the route's own).
	Admit(ctx context.Context, account string) error
	// Answered tells the limiter an upstream answer, which may ask for a
	// cool-down (429 or 503 with Retry-After, a rate limit at zero).
	Answered(ctx context.Context, account string, resp *http.Response)
}

// RateLimitedHeader marks a 429 the sidecar answers itself, so a caller
// can tell it from the vendor's.
const RateLimitedHeader = "X-Authsidecar-Rate-Limited"

// RateLimitedError is a call the sidecar held back: Reason is cooldown (the
// vendor asked) or limit (the route's own rate).
type RateLimitedError struct {
	Route      string
	Reason     string
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	if e.Reason == "cooldown" {
		return fmt.Sprintf("route %s is cooling down: the vendor asked for no calls for %s more", e.Route, e.RetryAfter.Round(time.Millisecond))
	}
	return fmt.Sprintf("route %s is at its rate limit; the next call may go in %s", e.Route, e.RetryAfter.Round(time.Millisecond))
}

// writeRateLimited answers 429 for a call held back, with Retry-After in
// whole seconds, rounded up.
func writeRateLimited(w http.ResponseWriter, e *RateLimitedError) {
	seconds := int(math.Ceil(e.RetryAfter.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(seconds))
	w.Header().Set(RateLimitedHeader, "true")
	WriteJSON(w, http.StatusTooManyRequests, errorBody{Error: "rate_limited", Route: e.Route, Message: e.Error(), RetryAfterSeconds: seconds})
}
