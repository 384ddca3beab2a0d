package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/proxy"
)

// Client keys in shared mode: CLIENT_KEYS=NAME:KEY,... names each key's
// holder (a tenant); a key given alone (the older form) is anonymous and
// unrestricted. CLIENT_KEY_<NAME>_ROUTES and CLIENT_KEY_<NAME>_ACCOUNTS
// restrict a named key, NAME upper-cased with dashes as underscores.

// keyName is what a client key's name may be.
var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// keyRulePattern is a restriction's variable.
var keyRulePattern = regexp.MustCompile(`^CLIENT_KEY_([A-Z0-9_]+)_(ROUTES|ACCOUNTS)$`)

// KeyRule is what a named key may reach (proxy.ClientKey's Routes and
// Accounts).
type KeyRule struct {
	Routes, Accounts []string
}

// keyVariable is the part of a rule's variable that names key name.
func keyVariable(name string) string { return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) }

// parseKeyRules reads the CLIENT_KEY_<NAME>_ROUTES and _ACCOUNTS variables,
// by NAME as the variables spell it; routes are the configured routes'
// names. It returns the variables it read, so they are not taken for typos.
func parseKeyRules(environ map[string]string, routes []string) (map[string]KeyRule, []string, error) {
	rules := map[string]KeyRule{}
	var read []string
	for variable, value := range environ {
		m := keyRulePattern.FindStringSubmatch(variable)
		if m == nil {
			continue
		}
		read = append(read, variable)
		var entries []string
		for _, e := range strings.Split(value, ",") {
			if e = strings.TrimSpace(e); e != "" {
				entries = append(entries, e)
			}
		}
		if len(entries) == 0 {
			return nil, nil, fmt.Errorf("%s: is empty; list what the key may reach, or unset it to allow everything", variable)
		}
		rule := rules[m[1]]
		for _, e := range entries {
			switch {
			case m[2] == "ROUTES" && !slices.Contains(routes, e):
				return nil, nil, fmt.Errorf("%s: no route %q (ROUTES has %s)", variable, e, strings.Join(routes, ", "))
			case m[2] == "ACCOUNTS" && !validAccountRule(e):
				return nil, nil, fmt.Errorf("%s: %q is neither an account name (1-64 characters of letters, digits and . _ @ -) nor a prefix ending in * (acme-*)", variable, e)
			}
		}
		if m[2] == "ROUTES" {
			rule.Routes = entries
		} else {
			rule.Accounts = entries
		}
		rules[m[1]] = rule
	}
	return rules, read, nil
}

func validAccountRule(rule string) bool {
	if prefix, ok := strings.CutSuffix(rule, "*"); ok {
		return prefix == "" || auth.ValidAccount(prefix) && len(prefix) < 64
	}
	return auth.ValidAccount(rule)
}

// ClientKeys are the CLIENT_KEYS given (split at commas) with their rules:
// each NAME:KEY or KEY, trimmed; a key shorter than 16 characters, or a
// name or key given twice, is refused. Errors never quote a key.
func ClientKeys(given []string, rules map[string]KeyRule) ([]proxy.ClientKey, error) {
	keys := make([]proxy.ClientKey, 0, len(given))
	names := map[string]bool{}
	for i, entry := range given {
		k := proxy.ClientKey{Key: strings.TrimSpace(entry)}
		if name, key, ok := strings.Cut(k.Key, ":"); ok && keyName.MatchString(name) {
			k.Name, k.Key = name, key
		}
		if len(k.Key) < minPresentedSecret {
			return nil, fmt.Errorf("key %d %s", i+1, errTooShort)
		}
		for j := range keys {
			if keys[j].Key == k.Key {
				return nil, fmt.Errorf("key %d is the same as key %d; give each holder a key of its own", i+1, j+1)
			}
		}
		if k.Name != "" {
			v := keyVariable(k.Name)
			if names[v] {
				return nil, fmt.Errorf("key %d: the name %s is given twice (names compare without case, - as _)", i+1, k.Name)
			}
			names[v] = true
			k.Routes, k.Accounts = rules[v].Routes, rules[v].Accounts
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// checkRulesHaveKeys refuses, at start-up, a rule for a name no key has: a
// typo in either would leave a tenant's key unrestricted. (A key file that
// later drops a tenant's key is fine: the tenant is gone.)
func checkRulesHaveKeys(rules map[string]KeyRule, keys []proxy.ClientKey) error {
	for v := range rules {
		if !slices.ContainsFunc(keys, func(k proxy.ClientKey) bool { return k.Name != "" && keyVariable(k.Name) == v }) {
			return fmt.Errorf("CLIENT_KEY_%s_*: CLIENT_KEYS has no key named so (give it as NAME:KEY)", v)
		}
	}
	return nil
}

// minPresentedSecret is the shortest client key or ADMIN_TOKEN taken: a
// caller presents them on every call, so they must not be guessable.
const minPresentedSecret = 16

var errTooShort = errors.New("is shorter than 16 characters; make one with: openssl rand -base64 24")

// CheckAdminToken refuses an ADMIN_TOKEN short enough to guess: it opens the
// admin API and may replace a route's connection, so it is held to the rule
// of client keys. Empty is allowed (the admin API is then off). The value
// comes trimmed (from the environment or its file). The error never quotes
// the token.
func CheckAdminToken(token string) error {
	if token != "" && len(token) < minPresentedSecret {
		return errTooShort
	}
	return nil
}
