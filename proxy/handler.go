// Package proxy is the sidecar's HTTP side: it routes a call by its first
// path segment to the route's upstream, with the route's token added.
package proxy

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ReservedNames are first path segments the sidecar serves itself; no route
// may take them.
var ReservedNames = []string{"healthz", "readyz", "oauth", "metrics", "status"}

// Route is one upstream behind the sidecar.
type Route struct {
	// Name is the first path segment that selects the route.
	Name string
	// Upstream is where calls go; its path is a base the rest is joined to.
	Upstream *url.URL
	Tokens   TokenSource
	Inject   Injection
	// Refused, when set, recognizes answers that refuse the token without
	// a 401; they are handled as a 401.
	Refused func(status int, head []byte) bool
}

type route struct {
	upstream *url.URL
	proxy    *httputil.ReverseProxy
}

// Options configures a Handler.
type Options struct {
	Routes []Route
	// MaxReplayBytes is the largest request body kept for a replay after 401.
	MaxReplayBytes int64
	// Transport sends requests upstream; nil means NewUpstreamTransport's.
	Transport http.RoundTripper
	// ForwardedHeaders adds X-Forwarded-For/Host/Proto. Off by default: they
	// would tell vendors about internal addresses.
	ForwardedHeaders bool
	// OAuth, when set, serves /oauth/ (the consent flow).
	OAuth http.Handler
	// Detail, when set, adds to /readyz's answer; verbose is ?verbose.
	Detail func(verbose bool) map[string]any
	// ClientKeys, when set, are the keys a caller must present in the
	// X-Authsidecar-Key header; the header is never forwarded.
	ClientKeys []string
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Observer, when set, is told of every proxied call, for metrics.
	Observer Observer
	Logger   *zap.Logger
	Now      func() time.Time
}

// Handler is the sidecar's http.Handler.
type Handler struct {
	routes     map[string]*route
	names      []string
	oauth      http.Handler
	detail     func(verbose bool) map[string]any
	metrics    http.Handler
	observer   Observer
	clientKeys [][]byte
	log        *zap.Logger
	now        func() time.Time
	notReady   atomic.Bool
}

// New builds a Handler, one reverse proxy per route.
func New(opts Options) (*Handler, error) {
	if opts.MaxReplayBytes < 0 {
		return nil, errors.New("max replay bytes must not be negative")
	}
	h := &Handler{
		routes:   make(map[string]*route, len(opts.Routes)),
		oauth:    opts.OAuth,
		detail:   opts.Detail,
		metrics:  opts.Metrics,
		observer: opts.Observer,
		log:      opts.Logger,
		now:      opts.Now,
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.observer == nil {
		h.observer = nopObserver{}
	}
	for _, k := range opts.ClientKeys {
		h.clientKeys = append(h.clientKeys, []byte(k))
	}
	base := opts.Transport
	if base == nil {
		base = NewUpstreamTransport(30 * time.Second)
	}
	pool := newBufferPool(opts.MaxReplayBytes)
	for _, r := range opts.Routes {
		switch {
		case !ValidRouteName(r.Name):
			return nil, fmt.Errorf("route name %q: must be lower-case letters, digits and dashes", r.Name)
		case slices.Contains(ReservedNames, r.Name):
			return nil, fmt.Errorf("route name %q is reserved for the sidecar's own endpoints", r.Name)
		case h.routes[r.Name] != nil:
			return nil, fmt.Errorf("route %q is configured twice", r.Name)
		case r.Upstream == nil || r.Upstream.Host == "" || (r.Upstream.Scheme != "http" && r.Upstream.Scheme != "https"):
			return nil, fmt.Errorf("route %q: upstream must be an absolute http or https URL", r.Name)
		case r.Tokens == nil:
			return nil, fmt.Errorf("route %q has no token source", r.Name)
		}
		h.routes[r.Name] = &route{upstream: r.Upstream, proxy: h.newReverseProxy(r, base, pool, opts.ForwardedHeaders)}
		h.names = append(h.names, r.Name)
	}
	slices.Sort(h.names)
	return h, nil
}

func (h *Handler) newReverseProxy(r Route, base http.RoundTripper, pool *bufferPool, forwarded bool) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		// Rewrite, not Director: hop-by-hop and X-Forwarded-* headers are
		// already gone when it runs, whatever the caller's Connection says.
		Rewrite: func(pr *httputil.ProxyRequest) {
			call := callFrom(pr.In.Context())
			pr.Out.URL = call.target
			pr.Out.Host = ""
			// The caller's own credentials never reach the vendor.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del(ClientKeyHeader)
			if forwarded {
				pr.SetXForwarded()
			}
		},
		Transport: &tokenTransport{
			route:   r.Name,
			tokens:  r.Tokens,
			inject:  r.Inject,
			base:    base,
			pool:    pool,
			refused: r.Refused,
		},
		// Streamed answers (SSE, chunked, downloads) reach the caller as
		// they arrive.
		FlushInterval: -1,
		// Without a pool, every call allocates a 32 KiB copy buffer.
		BufferPool:   copyBuffers,
		ErrorHandler: h.proxyError,
		ErrorLog:     zap.NewStdLog(h.log.Named("reverseproxy")),
	}
}

// copyBuffers recycles the buffers answers are copied through.
var copyBuffers = &bufferPoolAdapter{pool: sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}}

// bufferPoolAdapter is a sync.Pool as an httputil.BufferPool; it keeps
// pointers to slices so Put does not allocate.
type bufferPoolAdapter struct{ pool sync.Pool }

func (p *bufferPoolAdapter) Get() []byte { return *p.pool.Get().(*[]byte) }

func (p *bufferPoolAdapter) Put(b []byte) {
	if cap(b) != 32<<10 {
		return
	}
	b = b[:cap(b)]
	p.pool.Put(&b)
}

// NewUpstreamTransport is the transport to vendors: timeouts on every phase
// but the body (answers may stream for long), and HTTPS_PROXY honoured.
func NewUpstreamTransport(responseHeaderTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
	}
}

// ClientKeyHeader carries a caller's client key when CLIENT_KEYS is set.
const ClientKeyHeader = "X-Authsidecar-Key"

// clientAllowed checks the caller's client key, in constant time against
// every key, when keys are configured.
func (h *Handler) clientAllowed(r *http.Request) bool {
	if len(h.clientKeys) == 0 {
		return true
	}
	presented := []byte(r.Header.Get(ClientKeyHeader))
	match := 0
	for _, k := range h.clientKeys {
		match |= subtle.ConstantTimeCompare(presented, k)
	}
	return match == 1
}

// SetReady sets what /readyz answers; it turns false when draining.
func (h *Handler) SetReady(ready bool) { h.notReady.Store(!ready) }

// replayOutcome says what happened after a 401, for the call's log line.
type replayOutcome string

const (
	replayNone          replayOutcome = ""
	replayDone          replayOutcome = "replayed"
	replayNotReplayable replayOutcome = "body_too_large"
	replayNoNewToken    replayOutcome = "no_new_token"
	replayTokenError    replayOutcome = "token_error"
)

// outcome names what followed a 401 for metrics: for a replay, whether the
// replay was refused too.
func (o replayOutcome) outcome(finalStatus int) string {
	if o == replayDone {
		if finalStatus == http.StatusUnauthorized {
			return "replayed_refused"
		}
		return "replayed"
	}
	return string(o)
}

// Observer is told of every proxied call. Its methods must be cheap and safe
// for concurrent use.
type Observer interface {
	Request(route, method string, status int, took time.Duration)
	// Replay reports what followed an upstream 401: replayed,
	// replayed_refused, body_too_large, no_new_token or token_error.
	Replay(route, outcome string)
}

type nopObserver struct{}

func (nopObserver) Request(string, string, int, time.Duration) {}
func (nopObserver) Replay(string, string)                      {}

// call is what the handler and the transport share about one proxied call.
type call struct {
	route  string
	target *url.URL
	replay replayOutcome
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	switch escaped {
	case "/healthz":
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
		return
	case "/readyz":
		body := map[string]any{"ready": true}
		if h.detail != nil {
			body = h.detail(r.URL.Query().Has("verbose"))
			body["ready"] = true
		}
		status := http.StatusOK
		if h.notReady.Load() {
			body["ready"], body["reason"], status = false, "shutting down", http.StatusServiceUnavailable
		}
		writeJSON(w, status, body)
		return
	}
	if escaped == "/metrics" && h.metrics != nil {
		h.metrics.ServeHTTP(w, r)
		return
	}
	name, rest, ok := splitRoute(escaped)
	if ok && name == "oauth" && h.oauth != nil {
		h.oauth.ServeHTTP(w, r)
		return
	}
	if !h.clientAllowed(r) {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "client_key_required",
			Message: "this sidecar serves only callers that present a client key in the " + ClientKeyHeader + " header"})
		return
	}
	rt := h.routes[name]
	if !ok || rt == nil {
		writeJSON(w, http.StatusNotFound, errorBody{
			Error:   "unknown_route",
			Message: fmt.Sprintf("no route %q; calls go to /ROUTE/path", name),
			Routes:  h.names,
		})
		return
	}
	if r.Method == http.MethodConnect {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed", Route: name, Message: "CONNECT is not proxied"})
		return
	}
	confined, err := confinePath(rest)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_path", Route: name, Message: err.Error()})
		return
	}
	target, err := upstreamURL(rt.upstream, confined, r.URL.RawQuery)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_path", Route: name, Message: err.Error()})
		return
	}

	c := &call{route: name, target: target}
	rec := &statusRecorder{ResponseWriter: w}
	start := h.now()
	rt.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))

	took := h.now().Sub(start)
	h.observer.Request(name, r.Method, rec.statusOrOK(), took)
	if c.replay != replayNone {
		h.observer.Replay(name, c.replay.outcome(rec.statusOrOK()))
	}
	if ce := h.log.Check(zapcore.InfoLevel, "proxied"); ce != nil {
		ce.Write(
			zap.String("route", name),
			zap.String("method", r.Method),
			zap.String("path", redactedTarget(confined, r.URL.RawQuery)),
			zap.Int("status", rec.statusOrOK()),
			zap.Duration("duration", took),
			zap.Int64("bytes", rec.written),
			zap.Bool("replayed", c.replay == replayDone),
			zap.String("after_401", string(c.replay)),
		)
	}
}
