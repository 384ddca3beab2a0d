// Package app wires the sidecar together from its configuration. main only
// calls it; tests and the demo build the same thing.
package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/admin"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/consent"
	"github.com/authsidecar/authsidecar/internal/metrics"
	"github.com/authsidecar/authsidecar/internal/ratelimit"
	"github.com/authsidecar/authsidecar/internal/route"
	"github.com/authsidecar/authsidecar/internal/tracing"
	"github.com/authsidecar/authsidecar/proxy"
)

// App is a configured sidecar, not yet serving.
type App struct {
	cfg   *config.Config
	log   *zap.Logger
	clock clock.Clock
	// store is the one token store: in-process, or Redis with every value
	// sealed. storeKind names it for /readyz.
	store     cache.LockingStore
	storeKind string
	metrics   *metrics.Metrics
	// storeDegraded is set while the store does not answer, or not in
	// time; storeCause says which.
	storeDegraded atomic.Bool
	storeCause    atomic.Value // string
	// recovery holds rotating refreshes back after the store lost its
	// data; marker tells that it did (nil for the in-process store).
	recovery *auth.Recovery
	marker   *cache.Marker
	routes   *route.Table
	deps     route.Deps // what a route rebuilt for a changed secret file gets
	consent  *consent.Flow
	admin    *admin.Token
	// tracing is OpenTelemetry as the OTEL_* variables set it up; served
	// is the handler with its server spans (the handler itself when off).
	tracing *tracing.Tracing
	served  http.Handler
	handler *proxy.Handler
	// sealer seals what leaves the process; nil for the in-process store.
	sealer *cache.Sealer
	// redis is the Redis store under the sealing, for a new REDIS_URL;
	// nil for the other stores.
	redis *cache.Redis
	files secretFiles
}

// Option changes how New builds the sidecar.
type Option func(*App)

// WithClock makes token expiry follow now instead of the wall clock, for
// tests and emulated vendors.
func WithClock(now clock.Clock) Option { return func(a *App) { a.clock = now } }

// New builds the sidecar. Every route's settings are checked here, so a
// route with a missing credential stops start-up with the variable's name.
// What New opens, Close closes; when New fails it has closed it already.
func New(cfg *config.Config, log *zap.Logger, opts ...Option) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, metrics: metrics.New()}
	for _, opt := range opts {
		opt(a)
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	cache.LogRedisTo(log.Named("redis"))
	a.recovery = auth.NewRecovery(recoveryWindow, a.clock)
	opened, err := openStore(cfg, a.clock)
	if err != nil {
		return nil, err
	}
	a.store, a.storeKind, a.sealer, a.redis = opened.store, opened.kind, opened.sealer, opened.redis
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	var storeLost func(context.Context) bool
	if a.storeKind == "redis" {
		a.marker = cache.NewMarker(a.redis, "marker")
		storeLost = a.storeLost
	}
	if a.tracing, err = tracing.FromEnv(context.Background(), a.log); err != nil {
		return nil, err
	}
	var tracer trace.Tracer // nil: off, at no cost
	if a.tracing.Enabled {
		tracer = a.tracing.Tracer()
	}
	engine, err := proxy.NewEngine(proxy.EngineOptions{
		Tracer: tracer, Propagator: a.tracing.Propagator, ForwardTraceparent: cfg.ForwardTraceparent,
		MaxReplayBytes:    cfg.MaxReplayBytes,
		ReplayBudgetBytes: cfg.ReplayBudgetBytes,
		Transport:         proxy.NewUpstreamTransport(cfg.UpstreamTimeout),
		ForwardedHeaders:  cfg.ForwardedHeaders,
		Logger:            log.Named("proxy"),
		Clock:             a.clock,
	})
	if err != nil {
		return nil, fmt.Errorf("building proxy: %w", err)
	}
	a.deps = route.Deps{
		Store: a.store, Engine: engine,
		TokenTimeout: cfg.TokenTimeout, RefreshMargin: cfg.RefreshMargin, UpstreamTimeout: cfg.UpstreamTimeout,
		Clock: a.clock, Logger: log.Named("auth"), Observer: a.metrics,
		Recovery: a.recovery, StoreLost: storeLost,
		RateObserver: a.metrics, StoreTimeout: cfg.StoreTimeout, Tracer: tracer,
	}
	if a.redis != nil {
		a.deps.Shared = a.redis
	}
	a.routes, err = route.Build(cfg.Routes, a.deps)
	if err != nil {
		return nil, err
	}
	for _, r := range a.routes.All() {
		log.Info("route configured",
			zap.String("route", r.Name),
			zap.String("preset", r.Preset),
			zap.String("grant", string(r.GrantType)),
			zap.String("upstream", r.Upstream.Redacted()))
	}
	a.metrics.CountAccounts(a.accountCounts)
	a.metrics.WatchCooldowns(a.cooldowns)
	a.admin = admin.NewToken(cfg.AdminToken)
	a.consent = consent.NewFlow(a.routes.Consent, a.store, a.admin, a.clock, log.Named("consent"))
	for _, rule := range cfg.KeyRules {
		if len(rule.Accounts) > 0 {
			a.consent.RequireAdminForAccounts(true)
		}
	}
	a.handler, err = proxy.New(proxy.Options{
		Routes:          a.routes,
		OAuth:           a.consent,
		Admin:           &admin.API{Token: a.admin, Accounts: a},
		Detail:          a.readyDetail,
		ClientKeys:      cfg.Clients,
		BodyIdleTimeout: cfg.BodyIdleTimeout,
		AccessLog:       cfg.AccessLog,
		Observer:        a.metrics,
		Metrics:         a.metricsOnMainListener(),
		// No caller on these lines: every call's would cost a stack walk
		// (a percent of the sidecar's CPU) to say proxy/call.go each time.
		Logger: log.Named("proxy").WithOptions(zap.WithCaller(false)),
		Clock:  a.clock,
	})
	if err != nil {
		return nil, fmt.Errorf("building proxy: %w", err)
	}
	a.served = a.handler
	if a.tracing.Enabled {
		a.served = a.tracing.ServerSpans(a.handler, a.routes.Names)
	}
	return a, nil
}

// Close releases what New opened: the connection to Redis, and the trace
// exporter, after it sent what it holds.
func (a *App) Close() error {
	if a.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.tracing.Shutdown(ctx); err != nil {
			a.log.Warn("sending the last traces failed", zap.Error(err))
		}
	}
	if c, ok := a.store.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// readyDetail is what /readyz says beyond ready: the store's state, and
// with ?verbose each route's token state (never a token).
func (a *App) readyDetail(verbose bool) map[string]any {
	d := map[string]any{"store": a.storeKind}
	if a.storeKind == "redis" {
		d["store_state"] = "ok"
		if a.storeDegraded.Load() {
			cause, _ := a.storeCause.Load().(string)
			d["store_state"] = "degraded: " + cause + "; serving tokens from memory"
		}
	}
	if verbose {
		routes := map[string]any{}
		for _, rt := range a.routes.All() {
			st := rt.Keeper.Status()
			r := map[string]any{"token": st.HasToken}
			if !st.Expiry.IsZero() {
				r["expires_in_seconds"] = int(a.clock.Until(st.Expiry).Seconds())
			}
			if st.LastError != "" {
				r["last_error"] = st.LastError
			}
			if st.StoreError != "" {
				r["store_error"] = st.StoreError
			}
			routes[rt.Name] = r
		}
		d["routes"] = routes
		if errs := a.secretFileErrors(); errs != nil {
			d["secret_files"] = errs
		}
	}
	return d
}

// metricsOnMainListener is /metrics on the main listener, unless
// METRICS_ADDR gives it a listener of its own.
func (a *App) metricsOnMainListener() http.Handler {
	if a.cfg.MetricsAddr != "" {
		return nil
	}
	return a.metrics.Handler()
}

// listenToFleet hears what other replicas announce: the pauses vendors
// asked of them, so this one holds back too, and the accounts removed, so
// this one stops serving them. Only with Redis (alone, a replica hears
// itself).
func (a *App) listenToFleet(ctx context.Context) {
	if a.redis == nil {
		return
	}
	go route.ListenForRemovals(ctx, a.redis.Subscribe, a.routes)
	ratelimit.Listen(ctx, a.redis.Subscribe, func() map[string]*ratelimit.Limiter {
		limiters := map[string]*ratelimit.Limiter{}
		for _, rt := range a.routes.All() {
			limiters[rt.Name] = rt.Limiter
		}
		return limiters
	})
}

// cooldowns is each route's longest cool-down left, for the gauge.
func (a *App) cooldowns() map[string]time.Duration {
	left := map[string]time.Duration{}
	for _, rt := range a.routes.All() {
		left[rt.Name] = rt.Limiter.Cooldown()
	}
	return left
}

// Handler is the sidecar's HTTP handler, traced when tracing is on.
func (a *App) Handler() http.Handler { return a.served }

// warmCheckEvery is how often an idle route looks whether its token is due:
// a refresh is due a minute (REFRESH_MARGIN) before expiry, or at half the
// token's life, so a second is early enough.
const warmCheckEvery = time.Second

// Serve serves on ln until ctx ends, then drains: /readyz turns false, the
// listener closes, and calls in flight get up to SHUTDOWN_TIMEOUT to finish.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	// Calls' contexts end when draining runs out of time: upgraded
	// (WebSocket) connections, which the server no longer tracks, close
	// with them.
	callsCtx, endCalls := context.WithCancel(context.Background())
	defer endCalls()
	srv := &http.Server{
		Handler:           a.served,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(a.log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return callsCtx },
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
	go a.watchStore(watchCtx, storeCheckEvery)
	go a.listenToFleet(watchCtx)
	a.files.mu.Lock()
	a.files.warm = map[string]context.CancelFunc{}
	for _, rt := range a.routes.All() {
		warmCtx, stop := context.WithCancel(watchCtx)
		a.files.warm[rt.Name] = stop
		go rt.Keeper.KeepWarm(warmCtx, warmCheckEvery)
	}
	a.files.mu.Unlock()
	go a.watchSecretFiles(watchCtx, secretFileCheckEvery)
	a.log.Info("listening", zap.String("addr", ln.Addr().String()), zap.Int("routes", len(a.routes.Names())))

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
	err := srv.Shutdown(shutdownCtx)
	if err == nil {
		// Shutdown does not wait for upgraded connections; streams and
		// upgrades get what is left of SHUTDOWN_TIMEOUT too.
		err = a.handler.Drain(shutdownCtx)
	}
	if err != nil {
		endCalls()
		srv.Close()
		return fmt.Errorf("draining: calls still in flight after SHUTDOWN_TIMEOUT (%s): %w", a.cfg.ShutdownTimeout, err)
	}
	a.log.Info("drained")
	return nil
}

// NewLogger builds the logger the configuration asks for.
func NewLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	if format == "console" {
		zc := zap.NewDevelopmentConfig()
		zc.Level = zap.NewAtomicLevelAt(lvl)
		zc.DisableStacktrace = true
		return zc.Build()
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "time"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	// Lines are written in batches — up to 256 KiB, at least every second
	// — not one write(2) each: at tens of thousands of calls a second the
	// access log's syscalls were a tenth of the sidecar's time. Sync, at
	// exit, writes what is left; a process killed outright loses at most
	// the last second.
	out := &zapcore.BufferedWriteSyncer{WS: zapcore.Lock(os.Stderr), Size: 256 << 10, FlushInterval: time.Second}
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), out, lvl),
		zap.AddCaller(), zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}
