// Package route is what a route is: its settings, its grant, the keeper of
// its token, how the token is injected, its reverse proxy, and whether a
// person can consent for it. One constructor builds all of it, and one Table
// holds the routes that the handler, the operator commands, /readyz and the
// metrics read.
package route

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/consent"
	"github.com/authsidecar/authsidecar/internal/ratelimit"
	"github.com/authsidecar/authsidecar/internal/tlsfiles"
	"github.com/authsidecar/authsidecar/proxy"
)

// Route is one configured route, ready to serve.
type Route struct {
	Name string
	// Prefix is its variables' prefix, such as "MY_API_", for messages.
	Prefix    string
	Preset    string
	GrantType auth.GrantType
	Grant     auth.Grant
	Keeper    *auth.Keeper
	// Accounts are the route's vendor accounts besides its own (Keeper).
	Accounts  *Accounts
	Forwarder *proxy.Forwarder
	// Consent is the route's consent flow; nil when it has none.
	Consent *consent.Route
	// Limiter holds the route's calls back when the vendor asks for a
	// pause, and to the route's own rate.
	Limiter  *ratelimit.Limiter
	Upstream *url.URL
}

// Deps is what every route is built with.
type Deps struct {
	Store        cache.LockingStore
	Engine       *proxy.Engine
	TokenTimeout time.Duration
	// UpstreamTimeout is for a route's own upstream transport.
	UpstreamTimeout time.Duration
	RefreshMargin   time.Duration
	Clock           clock.Clock
	Logger          *zap.Logger
	Observer        auth.Observer
	// Recovery is the replica's, shared by its routes; StoreLost tells
	// whether the store lost its data (nil: it cannot).
	Recovery  *auth.Recovery
	StoreLost func(context.Context) bool
	// Shared is the fleet's store for rate limits and cool-downs, and what
	// account removals are announced through; nil without Redis (they are
	// then this process's).
	Shared       ratelimit.Shared
	RateObserver ratelimit.Observer
	StoreTimeout time.Duration
	// Tracer, when set, traces refreshes, lock waits and token requests.
	Tracer trace.Tracer
}

// New builds the route rc describes. Every setting is checked here, so a
// route with a missing credential stops start-up with the variable's name.
func New(rc config.Route, d Deps) (*Route, error) {
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	preset, ok := auth.LookupPreset(rc.Preset)
	if !ok {
		return nil, fmt.Errorf("%sPRESET: unknown preset %q", rc.Prefix, rc.Preset)
	}
	settings := preset.Apply(rc.Settings())
	if settings.RedirectURL != "" {
		settings.ConsentPath = "/oauth/" + rc.Name + "/start"
	}
	// The route's own client: a client certificate, when a route has one,
	// must not be presented to another route's token endpoint. The same
	// certificate goes upstream: a certificate-bound token (RFC 8705) is
	// only accepted with it.
	tlsConfig, err := tlsfiles.ClientConfig(settings.TLSCertFile, settings.TLSKeyFile, settings.TLSCAFile)
	if err != nil {
		return nil, fmt.Errorf("%s%w", rc.Prefix, err)
	}
	tokenTransport := proxy.NewUpstreamTransport(d.TokenTimeout)
	// Each route has its own pool upstream, sized by its variable: one
	// busy route does not crowd out another's idle connections.
	upstream := proxy.NewPooledTransport(d.UpstreamTimeout, rc.UpstreamMaxIdleConns)
	if tlsConfig != nil && (settings.TLSCertFile != "" || settings.TLSCAFile != "") {
		proxy.WithTLS(tokenTransport, tlsConfig)
		proxy.WithTLS(upstream, tlsConfig)
	}
	tokenClient := &http.Client{
		Transport: tokenTransport,
		// Token, refresh and revoke requests carry passwords, client
		// secrets and refresh tokens: a redirect would re-send them to
		// wherever it points. Its answer is taken as the endpoint's.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	built, err := preset.Build(rc.Name, settings, tokenClient, d.Clock, d.Logger.With(zap.String("route", rc.Name)))
	if err != nil {
		var se *auth.SettingError
		if errors.Is(err, auth.ErrNoCredentials) {
			p := rc.Prefix
			return nil, fmt.Errorf("%sGRANT: no credentials for route %s: set %sACCESS_TOKEN, %sREFRESH_TOKEN, %sUSERNAME and %sPASSWORD, or %sCLIENT_ID and %sCLIENT_SECRET (or %sCLIENT_KEY_FILE, %sCLIENT_ASSERTION_FILE)",
				p, rc.Name, p, p, p, p, p, p, p, p)
		}
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s%s: %w", rc.Prefix, se.Setting, se.Err)
		}
		return nil, fmt.Errorf("route %s: %w", rc.Name, err)
	}
	keeper := newKeeper(rc.Name, "", built.Grant, built.StoreKey, built.LegacyStoreKey, d)
	r := &Route{Name: rc.Name, Prefix: rc.Prefix, Preset: rc.Preset, GrantType: built.GrantType,
		Grant: built.Grant, Keeper: keeper, Upstream: built.Upstream}
	r.Accounts = newAccounts(r, built.StoreKey, settings.ConsentPath, d)
	r.Limiter = ratelimit.New(ratelimit.Config{
		Route: rc.Name, Rate: rc.Rate(), MaxWait: rc.RateLimitMaxWait, MaxCooldown: rc.RateLimitMaxCooldown,
		Shared: d.Shared, Clock: d.Clock, Logger: d.Logger.Named("ratelimit"), Observer: d.RateObserver,
		StoreTimeout: d.StoreTimeout,
	})
	if settings.RedirectURL != "" {
		if r.Consent, err = consent.NewRoute(rc.Name, rc.Prefix, settings, built.Grant, keeper); err != nil {
			return nil, err
		}
		if r.Accounts.Enabled() {
			r.Consent.Accounts = r.Accounts
		}
	}
	r.Forwarder, err = d.Engine.Forwarder(proxy.Route{
		Name:      rc.Name,
		Upstream:  built.Upstream,
		Tokens:    r.Accounts,
		Inject:    proxy.Injection{QueryParam: built.QueryParam},
		Refused:   built.Refused,
		Transport: upstream,
		Limiter:   r.Limiter,
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// newKeeper is the keeper of one token — the route's own, or account's —
// on its fleet's lock and store key, so that every replica refreshes it
// once.
func newKeeper(route, account string, grant auth.Grant, key, legacyKey string, d Deps) *auth.Keeper {
	fleet := auth.NewFleet(auth.FleetConfig{
		Route: route, Grant: grant,
		Store: d.Store, Locker: d.Store,
		Key: key, LegacyKey: legacyKey,
		Margin: d.RefreshMargin,
		// The lock outlives a token call, so it is not lost mid-refresh,
		// yet bounds how long a crashed holder blocks the fleet.
		LockTTL: d.TokenTimeout + 5*time.Second,
		Clock:   d.Clock, Logger: d.Logger, Observer: d.Observer,
		Recovery: d.Recovery, StoreLost: d.StoreLost,
		Account: account, Tracer: d.Tracer,
	})
	return auth.NewKeeper(auth.KeeperConfig{
		Route: route, Source: fleet,
		Timeout: d.TokenTimeout, Margin: d.RefreshMargin,
		Clock: d.Clock, Logger: d.Logger, Observer: d.Observer,
		Account: account, Tracer: d.Tracer,
	})
}
