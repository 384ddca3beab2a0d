package proxy

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// ClientKeyHeader carries a caller's client key when CLIENT_KEYS is set.
const ClientKeyHeader = "X-Authsidecar-Key"

// ClientKey is a key callers present in ClientKeyHeader, and what its
// holder (a tenant, in shared mode) may reach with it.
type ClientKey struct {
	// Name names the holder in logs, metrics and its rules; empty for a
	// key given without one, which may reach every route and account.
	Name string
	Key  string
	// Routes are the routes the key may call; empty: every route.
	Routes []string
	// Accounts are the accounts the key may use: exact names, or prefixes
	// ending in "*" ("acme-*"; "*" alone is every named account). Empty:
	// every account and the route's own. When set, a call must name one
	// of them: the route's own account is the operator's, not a tenant's.
	Accounts []string
}

// mayCall reports whether the key may call route.
func (k *ClientKey) mayCall(route string) bool {
	return len(k.Routes) == 0 || slices.Contains(k.Routes, route)
}

// mayUse reports whether the key may use account (asked false: the
// route's own). Names compare byte for byte: the header is checked against
// the account alphabet before this, so no other spelling, case or encoding
// reaches an account.
func (k *ClientKey) mayUse(account string, asked bool) bool {
	if len(k.Accounts) == 0 {
		return true
	}
	if !asked {
		return false
	}
	for _, rule := range k.Accounts {
		if prefix, ok := strings.CutSuffix(rule, "*"); ok {
			if strings.HasPrefix(account, prefix) {
				return true
			}
		} else if rule == account {
			return true
		}
	}
	return false
}

// SetClientKeys replaces the keys callers must present (CLIENT_KEYS, as
// its file changed); none: no key needed.
func (h *Handler) SetClientKeys(keys []ClientKey) {
	held := make([]ClientKey, len(keys))
	copy(held, keys)
	h.clientKeys.Store(&held)
}

// anyone is the caller when no keys are configured.
var anyone = &ClientKey{}

// client is the key the caller presented, compared in constant time
// against every key; nil when keys are configured and none matches (or
// more than one header was sent).
func (h *Handler) client(r *http.Request) *ClientKey {
	keys := *h.clientKeys.Load()
	if len(keys) == 0 {
		return anyone
	}
	values := r.Header.Values(ClientKeyHeader)
	if len(values) != 1 {
		return nil
	}
	presented := []byte(values[0])
	found := -1
	for i := range keys {
		if subtle.ConstantTimeCompare(presented, []byte(keys[i].Key)) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	return &keys[found]
}

// routesFor is the route names a key may see in an unknown-route answer.
func routesFor(k *ClientKey, names []string) []string {
	if len(k.Routes) == 0 {
		return names
	}
	var mine []string
	for _, n := range names {
		if k.mayCall(n) {
			mine = append(mine, n)
		}
	}
	return mine
}
