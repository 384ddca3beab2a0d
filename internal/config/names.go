package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/authsidecar/authsidecar/auth"
)

// The names of the variables the sidecar reads, for checking values and for
// telling an operator about a variable that looks mistyped.

// tagNames lists the env tags of v's fields.
func tagNames(v any) []string {
	var names []string
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		if key, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ","); key != "" && key != "-" {
			names = append(names, key)
		}
	}
	return names
}

func globalNames() []string { return tagNames(Config{}) }

func routeNames() []string { return tagNames(Route{}) }

// knownGlobal and knownRoute are every variable name, _FILE twins included.
func knownGlobal() []string { return append(globalNames(), fileTwins(globalSecrets)...) }

func knownRoute() []string { return append(routeNames(), fileTwins(routeSecrets)...) }

// trimmed is environ with every value's surrounding white space removed.
func trimmed(environ map[string]string) map[string]string {
	out := make(map[string]string, len(environ))
	for k, v := range environ {
		out[k] = strings.TrimSpace(v)
	}
	return out
}

// checkControlCharacters refuses a control character inside a value the
// sidecar reads: a line break inside a token would make an invalid header,
// and the error would blame the upstream.
func checkControlCharacters(environ map[string]string, names []string, prefix string) error {
	for _, n := range names {
		if v, ok := environ[prefix+n]; ok && strings.ContainsFunc(v, unicode.IsControl) {
			return fmt.Errorf("%s%s: has a control character (a line break or tab) inside its value; remove it", prefix, n)
		}
	}
	return nil
}

// mistyped lists warnings about variables under a route's prefix that no
// route setting has, and variables a typo away from one of the sidecar's own
// names, each with the nearest known name.
func mistyped(environ map[string]string, routes []Route, read []string) []string {
	known := map[string]bool{}
	for _, n := range read {
		known[n] = true
	}
	global := knownGlobal()
	for _, n := range global {
		known[n] = true
	}
	var prefixes []string
	for _, r := range routes {
		prefixes = append(prefixes, r.Prefix)
		names := knownRoute()
		if p, ok := auth.LookupPreset(r.Preset); ok {
			names = append(names, p.Options...)
		}
		for _, n := range names {
			known[r.Prefix+n] = true
		}
	}
	var warnings []string
	for k := range environ {
		if known[k] {
			continue
		}
		var candidates []string
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				for n := range known {
					if strings.HasPrefix(n, p) {
						candidates = append(candidates, n)
					}
				}
			}
		}
		underRoute := len(candidates) > 0
		if !underRoute {
			candidates = global
		}
		nearest, d := nearestName(k, candidates)
		switch {
		case underRoute && d <= 3:
			warnings = append(warnings, fmt.Sprintf("%s is not a setting of its route and is ignored; did you mean %s?", k, nearest))
		case underRoute:
			warnings = append(warnings, fmt.Sprintf("%s is not a setting of its route and is ignored", k))
		case d <= 2 && len(k) >= 6:
			warnings = append(warnings, fmt.Sprintf("%s is not a setting and is ignored; did you mean %s?", k, nearest))
		}
	}
	slices.Sort(warnings)
	return warnings
}

// nearestName is the candidate least edits away from name, and how many.
func nearestName(name string, candidates []string) (string, int) {
	best, bestD := "", int(^uint(0)>>1)
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	return best, bestD
}

// editDistance is the Levenshtein distance, with a swap of two neighbours
// counted as one edit (ADRR for ADDR).
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
