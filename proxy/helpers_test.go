package proxy

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/auth"
)

// routeTable is the simplest proxy.Routes: a fixed map.
type routeTable map[string]*Forwarder

func (t routeTable) Forwarder(name string) (*Forwarder, bool) {
	f, ok := t[name]
	return f, ok
}

func (t routeTable) Names() []string {
	var names []string
	for n := range t {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// newHandler builds a handler over routes, each forwarded through one engine.
func newHandler(tb testing.TB, routes []Route, eo EngineOptions, o Options) *Handler {
	tb.Helper()
	engine, err := NewEngine(eo)
	if err != nil {
		tb.Fatal(err)
	}
	table := routeTable{}
	for _, r := range routes {
		if table[r.Name], err = engine.Forwarder(r); err != nil {
			tb.Fatal(err)
		}
	}
	o.Routes = table
	h, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// newKeeper is a route's keeper for grant, on a store of this process.
func newKeeper(route string, grant auth.Grant, timeout time.Duration, log *zap.Logger, minBackoff time.Duration) *auth.Keeper {
	return newKeeperWith(route, grant, auth.KeeperConfig{Timeout: timeout, Logger: log, MinBackoff: minBackoff})
}

// newKeeperWith is newKeeper with every keeper setting open to the test.
func newKeeperWith(route string, grant auth.Grant, cfg auth.KeeperConfig) *auth.Keeper {
	cfg.Route = route
	cfg.Source = auth.NewFleet(auth.FleetConfig{Route: route, Grant: grant, Logger: cfg.Logger})
	return auth.NewKeeper(cfg)
}

// keeperTokens serves one keeper's token to every call, as a route without
// accounts does.
type keeperTokens struct{ *auth.Keeper }

func (k keeperTokens) Invalidate(_ context.Context, accessToken string) {
	k.Keeper.Invalidate(accessToken)
}
