package proxy

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// Route is one upstream behind the sidecar, as the proxy sees it.
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
	// Transport, when set, is the route's own way upstream (a client
	// certificate of its own); nil: the engine's.
	Transport http.RoundTripper
	// Limiter, when set, holds calls back from the upstream.
	Limiter Limiter
}

// Forwarder sends one route's calls upstream: an httputil.ReverseProxy whose
// transport adds the route's token and replays once after a 401.
type Forwarder struct {
	upstream *url.URL
	proxy    *httputil.ReverseProxy
}

// EngineOptions configures an Engine.
type EngineOptions struct {
	// MaxReplayBytes is the largest request body kept for a replay after 401.
	MaxReplayBytes int64
	// ReplayBudgetBytes bounds the memory all calls' kept bodies hold
	// together; past it, bodies stream and are not replayed. Zero means
	// 64 MiB.
	ReplayBudgetBytes int64
	// Transport sends requests upstream; nil means NewUpstreamTransport's.
	Transport http.RoundTripper
	// ForwardedHeaders adds X-Forwarded-For/Host/Proto. Off by default: they
	// would tell vendors about internal addresses.
	ForwardedHeaders bool
	// Tracer, when set, traces each upstream call (and replay) as a client
	// span; Propagator carries trace context. ForwardTraceparent lets the
	// vendor see it (off by default: trace ids are internal).
	Tracer             trace.Tracer
	Propagator         propagation.TextMapPropagator
	ForwardTraceparent bool
	Logger             *zap.Logger
	Clock              clock.Clock
}

// Engine is what every route's Forwarder shares: the upstream transport,
// the replay buffers, and how a failed call is answered.
type Engine struct {
	transport http.RoundTripper
	pool      *bufferPool
	forwarded bool
	log       *zap.Logger
	clock     clock.Clock
	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
	fwdTrace  bool
}

// NewEngine checks opts and returns the engine routes are built on.
func NewEngine(opts EngineOptions) (*Engine, error) {
	if opts.MaxReplayBytes < 0 {
		return nil, errors.New("max replay bytes must not be negative")
	}
	if opts.ReplayBudgetBytes <= 0 {
		opts.ReplayBudgetBytes = 64 << 20
	}
	e := &Engine{transport: opts.Transport, pool: newBufferPool(opts.MaxReplayBytes, opts.ReplayBudgetBytes),
		forwarded: opts.ForwardedHeaders, log: opts.Logger, clock: opts.Clock,
		tracer: opts.Tracer, prop: opts.Propagator, fwdTrace: opts.ForwardTraceparent}
	if e.prop == nil {
		e.prop = propagation.TraceContext{}
	}
	if e.transport == nil {
		e.transport = NewUpstreamTransport(30 * time.Second)
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	return e, nil
}

// Forwarder builds the reverse proxy of route r.
func (e *Engine) Forwarder(r Route) (*Forwarder, error) {
	switch {
	case r.Upstream == nil || r.Upstream.Host == "" || (r.Upstream.Scheme != "http" && r.Upstream.Scheme != "https"):
		return nil, fmt.Errorf("route %q: upstream must be an absolute http or https URL", r.Name)
	case r.Tokens == nil:
		return nil, fmt.Errorf("route %q has no token source", r.Name)
	}
	return &Forwarder{upstream: r.Upstream, proxy: &httputil.ReverseProxy{
		// Rewrite, not Director: hop-by-hop and X-Forwarded-* headers are
		// already gone when it runs, whatever the caller's Connection says.
		Rewrite: func(pr *httputil.ProxyRequest) {
			call := callFrom(pr.In.Context())
			pr.Out.URL = call.target
			pr.Out.Host = ""
			// The caller's own credentials never reach the vendor.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del(ClientKeyHeader)
			pr.Out.Header.Del(AccountHeader)
			// The caller's trailers come after its body: the server fills
			// the inbound request's map then, so the outbound one must be
			// that map, not the copy Clone took before.
			pr.Out.Trailer = pr.In.Trailer
			if e.forwarded {
				pr.SetXForwarded()
			}
		},
		Transport: &tokenTransport{
			route:   r.Name,
			tokens:  r.Tokens,
			inject:  r.Inject,
			base:    cmp.Or(r.Transport, e.transport),
			pool:    e.pool,
			refused: r.Refused,
			limiter: r.Limiter,
			tracer:  e.tracer, propagator: e.prop, forwardTrace: e.fwdTrace,
		},
		// Zero, not -1: ReverseProxy already flushes at once every answer
		// that streams (text/event-stream, or of unknown length), and -1
		// would flush after every write of every answer — a write syscall
		// more per call.
		FlushInterval: 0,
		// Without a pool, every call allocates a 32 KiB copy buffer.
		BufferPool:   copyBuffers,
		ErrorHandler: e.proxyError,
		ErrorLog:     zap.NewStdLog(e.log.Named("reverseproxy")),
	}}, nil
}

// copyBuffers recycles the buffers answers are copied through.
var copyBuffers = &bufferPoolAdapter{pool: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}

const copyBufferSize = 32 << 10

// bufferPoolAdapter is a sync.Pool as an httputil.BufferPool. It keeps
// pointers to arrays: a slice put back converts to one without allocating,
// where a pointer to a slice header would escape on every answer.
type bufferPoolAdapter struct{ pool sync.Pool }

func (p *bufferPoolAdapter) Get() []byte { return p.pool.Get().(*[copyBufferSize]byte)[:] }

func (p *bufferPoolAdapter) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	p.pool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
}

// NewUpstreamTransport is the transport to vendors and token endpoints:
// timeouts on every phase but the body (answers may stream for long), and
// HTTPS_PROXY honoured.
func NewUpstreamTransport(responseHeaderTimeout time.Duration) *http.Transport {
	return NewPooledTransport(responseHeaderTimeout, DefaultIdleConnsPerHost)
}

// DefaultIdleConnsPerHost is a route's pool of idle upstream connections
// (NAME_UPSTREAM_MAX_IDLE_CONNS): as many as the callers a sidecar serves
// at once in a busy pod. A pool smaller than the concurrency closes a
// connection after nearly every answer and opens (and TLS-handshakes) a
// new one for the next call: with 256 callers and 64 idle connections, an
// 8-second run made 4,900 handshakes, against 160 with 256.
const DefaultIdleConnsPerHost = 256

// NewPooledTransport is NewUpstreamTransport keeping up to idlePerHost idle
// connections per host. TLS sessions are kept for resumption (a new
// connection to a vendor skips the full handshake), and HTTP/2 is used
// where the vendor offers it (ALPN).
func NewPooledTransport(responseHeaderTimeout time.Duration, idlePerHost int) *http.Transport {
	return &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		DialContext:       (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(0)},
		// The caller's Accept-Encoding goes upstream as it is. Without
		// this, a caller that asked for none made the transport ask for
		// gzip and inflate every answer on the way back: CPU spent, and a
		// body the caller would have taken compressed.
		DisableCompression:    true,
		MaxIdleConns:          idlePerHost * 4,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
	}
}

// WithTLS is t speaking TLS as cfg says (a client certificate, extra CAs).
// Sessions are kept for resumption only without a client certificate: a
// resumed session presents no certificate and carries the one of the
// session it resumes, so a rotated certificate would not be used — and a
// certificate-bound token would stay bound to the old one — until the
// session ticket expired (days).
func WithTLS(t *http.Transport, cfg *tls.Config) *http.Transport {
	c := cfg.Clone()
	c.ClientSessionCache = t.TLSClientConfig.ClientSessionCache
	if c.GetClientCertificate != nil || len(c.Certificates) > 0 {
		c.ClientSessionCache = nil
	}
	t.TLSClientConfig = c
	return t
}
