package route

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/consent"
	"github.com/authsidecar/authsidecar/proxy"
)

// Table is the sidecar's routes. Readers take the current set without a
// lock; a route rebuilt (a secret file changed, an account added) replaces
// the set whole, so a call sees either the old route or the new one.
type Table struct {
	set atomic.Pointer[routeSet]
}

type routeSet struct {
	byName map[string]*Route
	names  []string // sorted
}

// Build checks the route names and builds every route rc lists, in order;
// the first error stops it.
func Build(rcs []config.Route, d Deps) (*Table, error) {
	names := make([]string, len(rcs))
	for i, rc := range rcs {
		names[i] = rc.Name
	}
	if err := checkNames(names); err != nil {
		return nil, err
	}
	routes := make([]*Route, 0, len(rcs))
	for _, rc := range rcs {
		r, err := New(rc, d)
		if err != nil {
			return nil, err
		}
		routes = append(routes, r)
	}
	return newTable(routes...)
}

// newTable holds routes, which must have distinct names.
func newTable(routes ...*Route) (*Table, error) {
	s := &routeSet{byName: make(map[string]*Route, len(routes))}
	for _, r := range routes {
		if s.byName[r.Name] != nil {
			return nil, fmt.Errorf("route %q is configured twice", r.Name)
		}
		s.byName[r.Name] = r
		s.names = append(s.names, r.Name)
	}
	slices.Sort(s.names)
	t := &Table{}
	t.set.Store(s)
	return t, nil
}

// Replace swaps in r for the route of the same name, as a secret file
// changed: calls already under way finish on the old route, the next ones
// take the new. It reports whether there was such a route.
func (t *Table) Replace(r *Route) bool {
	for {
		old := t.set.Load()
		if old.byName[r.Name] == nil {
			return false
		}
		next := &routeSet{byName: make(map[string]*Route, len(old.byName)), names: old.names}
		for n, rt := range old.byName {
			next.byName[n] = rt
		}
		next.byName[r.Name] = r
		if t.set.CompareAndSwap(old, next) {
			return true
		}
	}
}

// Get returns the route called name.
func (t *Table) Get(name string) (*Route, bool) {
	r, ok := t.set.Load().byName[name]
	return r, ok
}

// Names lists the routes, sorted.
func (t *Table) Names() []string { return t.set.Load().names }

// All returns the routes, sorted by name.
func (t *Table) All() []*Route {
	s := t.set.Load()
	out := make([]*Route, len(s.names))
	for i, n := range s.names {
		out[i] = s.byName[n]
	}
	return out
}

// Forwarder implements proxy.Routes.
func (t *Table) Forwarder(name string) (*proxy.Forwarder, bool) {
	if r, ok := t.Get(name); ok {
		return r.Forwarder, true
	}
	return nil, false
}

// Consent returns the consent flow of the route called name, for the
// consent endpoints: nil when the route exists but has none.
func (t *Table) Consent(name string) (*consent.Route, bool) {
	r, ok := t.Get(name)
	if !ok {
		return nil, false
	}
	return r.Consent, true
}

// Unknown is the error for a route name the table does not hold.
func (t *Table) Unknown(name string) error {
	return &proxy.UnknownRouteError{Name: name, Configured: t.Names()}
}
