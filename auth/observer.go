package auth

import "time"

// Observer is told what a Keeper and its Fleet do, for metrics and for tests
// that wait on behaviour rather than time. Every method must be cheap and
// safe for concurrent use.
type Observer interface {
	// Refresh reports one refresh: result is success, adopted (taken from
	// the store), or the ErrorKind of its failure.
	Refresh(route, result string, took time.Duration)
	LockWait(route string)
	StoreError(route string)
	// TokenExpiry reports the expiry of the token now held (zero: none or
	// not known).
	TokenExpiry(route string, expiry time.Time)
}

type nopObserver struct{}

func (nopObserver) Refresh(string, string, time.Duration) {}
func (nopObserver) LockWait(string)                       {}
func (nopObserver) StoreError(string)                     {}
func (nopObserver) TokenExpiry(string, time.Time)         {}
