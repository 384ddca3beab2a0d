package consent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Consent states: what /start records, how long it lives, and how many a
// route may have pending.

// A pending state records who started it: the operator (who may replace a
// connection), or anyone while the route was not connected, with the
// connection seen then (which must still be there when consent finishes).
const (
	startedByOperator  = "operator"
	startedUnconnected = "unconnected:"
)

// encodeStarted is a state's record: who started it (started), and for
// which account (empty: the route's own connection). Account names have no
// '|', and records from before accounts have no "account:" prefix.
func encodeStarted(account, started string) []byte {
	if account == "" {
		return []byte(started)
	}
	return []byte("account:" + account + "|" + started)
}

// decodeStarted reads what encodeStarted wrote.
func decodeStarted(record []byte) (account, started string) {
	rest, ok := strings.CutPrefix(string(record), "account:")
	if !ok {
		return "", string(record)
	}
	account, started, _ = strings.Cut(rest, "|")
	return account, started
}

// stateTTL is how long a consent started has to finish.
const stateTTL = 10 * time.Minute

func stateCookie(route string) string { return "authsidecar_consent_" + route }

func stateKey(route, state string) string {
	sum := sha256.Sum256([]byte(state))
	return "consent-state:" + route + ":" + hex.EncodeToString(sum[:])
}

// maxPendingStates bounds the consents started and not finished per route
// and replica: a person needs one, and /start must not be a way to fill the
// store (206k states were made in a flood).
const maxPendingStates = 100

// pendingStates counts the states a replica issued that have not expired.
type pendingStates struct {
	mu      sync.Mutex
	byRoute map[string][]time.Time // expiries, oldest first
}

// admit records a new state for route, unless the route has too many.
func (p *pendingStates) admit(route string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.byRoute[route]
	for len(live) > 0 && !now.Before(live[0]) {
		live = live[1:]
	}
	if len(live) >= maxPendingStates {
		p.byRoute[route] = live
		return false
	}
	p.byRoute[route] = append(live, now.Add(stateTTL))
	return true
}

// newState makes a consent state: 32 random bytes, unguessable and
// single-use. The consent endpoints and the operator's login both use it.
func newState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
