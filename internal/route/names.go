package route

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/authsidecar/authsidecar/internal/config"
)

// reservedNames are the first path segments the sidecar's handler serves
// itself; no route may take them.
var reservedNames = []string{"healthz", "readyz", "oauth", "metrics", "status", "admin"}

// namePattern is what a route name may be: it is the first path segment of
// every call and part of environment variable names.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidName reports whether name can be a route's.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// checkNames checks the names ROUTES lists: valid, not reserved, listed
// once, and not sharing variables with another. Errors name ROUTES.
func checkNames(names []string) error {
	for i, n := range names {
		switch {
		case !ValidName(n):
			return fmt.Errorf("ROUTES: route name %q must be lower-case letters, digits and dashes ([a-z0-9-]+)", n)
		case slices.Contains(reservedNames, n):
			return fmt.Errorf("ROUTES: %q is reserved for the sidecar's own endpoints (%s)", n, strings.Join(reservedNames, ", "))
		case slices.Contains(names[:i], n):
			return fmt.Errorf("ROUTES: route %q is listed twice", n)
		}
	}
	// Two names that differ only by - and _ would share variables.
	for i, a := range names {
		for _, b := range names[i+1:] {
			if config.RoutePrefix(a) == config.RoutePrefix(b) {
				return fmt.Errorf("ROUTES: routes %q and %q would both read %s* variables", a, b, config.RoutePrefix(a))
			}
		}
	}
	return nil
}
