// Package app wires the sidecar together from its configuration. main only
// calls it; tests and the demo build the same thing.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy"
)

// App is a configured sidecar, not yet serving.
type App struct {
	cfg     *config.Config
	log     *zap.Logger
	store   cache.Store
	redis   *cache.Redis // nil with the in-process store
	metrics *metrics.Metrics
	// storeDegraded is set while Redis does not answer.
	storeDegraded atomic.Bool
	handler       *proxy.Handler
	keepers       map[string]*auth.Keeper
	grants        map[string]auth.Grant
	consent       map[string]proxy.ConsentRoute
}

// consentRoute checks that a route with a redirect URL can run the consent
// flow, and describes it.
func consentRoute(rc config.Route, s auth.Settings, grant auth.Grant, keeper *auth.Keeper) (proxy.ConsentRoute, error) {
	exchanger, ok := grant.(auth.Exchanger)
	switch {
	case !ok:
		return proxy.ConsentRoute{}, fmt.Errorf("%sREDIRECT_URL: the consent flow needs an OAuth2 grant; route %s's grant cannot exchange a code (unset REDIRECT_URL or set GRANT=authorization_code)", rc.Prefix, rc.Name)
	case s.AuthorizeURL == "":
		return proxy.ConsentRoute{}, fmt.Errorf("%sAUTHORIZE_URL: is required with REDIRECT_URL", rc.Prefix)
	case s.ClientID == "":
		return proxy.ConsentRoute{}, fmt.Errorf("%sCLIENT_ID: is required with REDIRECT_URL", rc.Prefix)
	}
	return proxy.ConsentRoute{
		Name: rc.Name, AuthorizeURL: s.AuthorizeURL, ClientID: s.ClientID, RedirectURL: s.RedirectURL,
		Scope: s.Scope, Exchanger: exchanger, Keeper: keeper,
	}, nil
}

// Option changes how New builds the sidecar.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock makes token expiry follow now instead of the wall clock, for
// tests and emulated vendors.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New builds the sidecar. Every route's settings are checked here, so a
// route with a missing credential stops start-up with the variable's name.
func New(cfg *config.Config, log *zap.Logger, opts ...Option) (*App, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	store, redisStore, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	tokenClient := &http.Client{Transport: proxy.NewUpstreamTransport(cfg.TokenTimeout)}
	a := &App{cfg: cfg, log: log, store: store, redis: redisStore, metrics: metrics.New(),
		keepers: map[string]*auth.Keeper{}, grants: map[string]auth.Grant{}, consent: map[string]proxy.ConsentRoute{}}

	var routes []proxy.Route
	var consentRoutes []proxy.ConsentRoute
	for _, rc := range cfg.Routes {
		preset, _ := auth.LookupPreset(rc.Preset)
		settings := preset.Apply(rc.Settings())
		if settings.RedirectURL != "" {
			settings.ConsentPath = "/oauth/" + rc.Name + "/start"
		}
		built, err := preset.Build(settings, tokenClient, o.now)
		if err != nil {
			var se *auth.SettingError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("%s%s: %w", rc.Prefix, se.Setting, se.Err)
			}
			return nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		keeper := auth.NewKeeper(auth.KeeperConfig{
			Route:    rc.Name,
			Grant:    built.Grant,
			Store:    store,
			StoreKey: settings.StoreKey(rc.Name),
			Timeout:  cfg.TokenTimeout,
			Margin:   cfg.RefreshMargin,
			Logger:   log.Named("auth"),
			Now:      o.now,
			Observer: a.metrics,
		})
		a.keepers[rc.Name] = keeper
		a.grants[rc.Name] = built.Grant
		if settings.RedirectURL != "" {
			cr, err := consentRoute(rc, settings, built.Grant, keeper)
			if err != nil {
				return nil, err
			}
			consentRoutes = append(consentRoutes, cr)
			a.consent[rc.Name] = cr
		}
		routes = append(routes, proxy.Route{
			Name:     rc.Name,
			Upstream: built.Upstream,
			Tokens:   keeper,
			Inject:   proxy.Injection{QueryParam: built.QueryParam},
			Refused:  built.Refused,
		})
		log.Info("route configured",
			zap.String("route", rc.Name),
			zap.String("preset", rc.Preset),
			zap.String("grant", string(built.GrantType)),
			zap.String("upstream", built.Upstream.Redacted()))
	}

	h, err := proxy.New(proxy.Options{
		Routes:           routes,
		MaxReplayBytes:   cfg.MaxReplayBytes,
		Transport:        proxy.NewUpstreamTransport(cfg.UpstreamTimeout),
		ForwardedHeaders: cfg.ForwardedHeaders,
		OAuth:            proxy.NewConsent(consentRoutes, store, cfg.AdminToken, log.Named("consent")),
		Detail:           a.readyDetail,
		ClientKeys:       cfg.ClientKeys,
		Observer:         a.metrics,
		Metrics:          a.metricsOnMainListener(),
		Logger:           log.Named("proxy"),
	})
	if err != nil {
		return nil, fmt.Errorf("building proxy: %w", err)
	}
	a.handler = h
	return a, nil
}

// openStore is the token store the configuration asks for: in-process, or
// Redis with every value sealed.
func openStore(cfg *config.Config) (cache.Store, *cache.Redis, error) {
	if cfg.RedisURL == "" {
		return cache.NewMemory(), nil, nil
	}
	client, err := cache.OpenRedis(cfg.RedisURL, cfg.RedisMode)
	if err != nil {
		return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	current, previous, err := cfg.Keys()
	if err != nil {
		return nil, nil, err
	}
	sealer, err := cache.NewSealer(current, previous...)
	if err != nil {
		return nil, nil, fmt.Errorf("TOKEN_ENCRYPTION_KEY: %w", err)
	}
	r := cache.NewRedis(client, cfg.RedisKeyPrefix)
	return cache.NewSealed(r, sealer), r, nil
}

// readyDetail is what /readyz says beyond ready: the store's state, and
// with ?verbose each route's token state (never a token).
func (a *App) readyDetail(verbose bool) map[string]any {
	d := map[string]any{"store": "memory"}
	if a.redis != nil {
		d["store"] = "redis"
		d["store_state"] = "ok"
		if a.storeDegraded.Load() {
			d["store_state"] = "degraded: serving tokens from memory"
		}
	}
	if verbose {
		routes := map[string]any{}
		for name, k := range a.keepers {
			st := k.Status()
			r := map[string]any{"token": st.HasToken}
			if !st.Expiry.IsZero() {
				r["expires_in_seconds"] = int(time.Until(st.Expiry).Seconds())
			}
			if st.LastError != "" {
				r["last_error"] = st.LastError
			}
			if st.StoreError != "" {
				r["store_error"] = st.StoreError
			}
			routes[name] = r
		}
		d["routes"] = routes
	}
	return d
}

// watchStore pings Redis until ctx ends. It marks the store degraded while
// Redis does not answer and, when it answers again, writes every route's
// token back so siblings see it without waiting for the next refresh.
func (a *App) watchStore(ctx context.Context, every time.Duration) {
	if a.redis == nil {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		pingCtx, cancel := context.WithTimeout(ctx, every)
		err := a.redis.Ping(pingCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !a.storeDegraded.Swap(true):
			a.metrics.StoreDegraded(true)
			a.log.Warn("token store degraded: Redis does not answer; serving tokens from memory", zap.Error(err))
		case err == nil && a.storeDegraded.Swap(false):
			a.metrics.StoreDegraded(false)
			a.log.Info("token store back: writing tokens through again")
			for name, k := range a.keepers {
				if err := k.Resync(ctx); err != nil {
					a.log.Warn("writing token back to the store failed", zap.String("route", name), zap.Error(err))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// metricsOnMainListener is /metrics on the main listener, unless
// METRICS_ADDR gives it a listener of its own.
func (a *App) metricsOnMainListener() http.Handler {
	if a.cfg.MetricsAddr != "" {
		return nil
	}
	return a.metrics.Handler()
}

// Handler is the sidecar's HTTP handler.
func (a *App) Handler() *proxy.Handler { return a.handler }

// Keeper returns a route's token keeper.
func (a *App) Keeper(route string) (*auth.Keeper, bool) {
	k, ok := a.keepers[route]
	return k, ok
}

// Serve serves on ln until ctx ends, then drains: /readyz turns false, the
// listener closes, and calls in flight get up to SHUTDOWN_TIMEOUT to finish.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(a.log.Named("http")),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if a.cfg.MetricsAddr != "" {
		msrv := &http.Server{Addr: a.cfg.MetricsAddr, ReadHeaderTimeout: 10 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metrics" {
					http.NotFound(w, r)
					return
				}
				a.metrics.Handler().ServeHTTP(w, r)
			})}
		mln, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			srv.Close()
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
		go msrv.Serve(mln)
		defer msrv.Close()
		a.log.Info("serving metrics", zap.String("addr", mln.Addr().String()))
	}
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go a.watchStore(watchCtx, 5*time.Second)
	a.log.Info("listening", zap.String("addr", ln.Addr().String()), zap.Int("routes", len(a.keepers)))

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}

	a.handler.SetReady(false)
	a.log.Info("draining", zap.Duration("shutdown_delay", a.cfg.ShutdownDelay), zap.Duration("shutdown_timeout", a.cfg.ShutdownTimeout))
	// Give load balancers that watch /readyz time to stop sending calls.
	time.Sleep(a.cfg.ShutdownDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		return fmt.Errorf("draining: calls still in flight after SHUTDOWN_TIMEOUT (%s): %w", a.cfg.ShutdownTimeout, err)
	}
	a.log.Info("drained")
	return nil
}

// NewLogger builds the logger the configuration asks for.
func NewLogger(level, format string) (*zap.Logger, error) {
	var zc zap.Config
	if format == "console" {
		zc = zap.NewDevelopmentConfig()
	} else {
		zc = zap.NewProductionConfig()
		zc.EncoderConfig.TimeKey = "time"
		zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil // every proxied call gets its line
	zc.DisableStacktrace = true
	return zc.Build()
}
