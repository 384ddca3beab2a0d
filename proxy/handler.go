// Package proxy is the sidecar's HTTP side: it routes a call by its first
// path segment to the route's upstream, with the route's token added.
package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
	"go.uber.org/zap"
)

// Routes is the table the handler finds a call's route in. It is read on
// every call, so the table may change while the sidecar serves.
type Routes interface {
	// Forwarder returns the route called name.
	Forwarder(name string) (*Forwarder, bool)
	// Names lists the routes, sorted, for the unknown-route answer.
	Names() []string
}

// Options configures a Handler.
type Options struct {
	Routes Routes
	// OAuth, when set, serves /oauth/ (the consent flow).
	OAuth http.Handler
	// Admin, when set, serves /admin/ (the operator's API, which checks
	// the admin token itself).
	Admin http.Handler
	// Detail, when set, adds to /readyz's answer; verbose is ?verbose.
	Detail func(verbose bool) map[string]any
	// ClientKeys, when set, are the keys a caller must present in the
	// X-Authsidecar-Key header, and what each may reach; the header is
	// never forwarded.
	ClientKeys []ClientKey
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Observer, when set, is told of every proxied call, for metrics.
	Observer Observer
	// BodyIdleTimeout bounds how long a caller's upload may stall between
	// reads; zero means 30 seconds.
	BodyIdleTimeout time.Duration
	// AccessLog is which calls get a line: "all" (or empty), "sampled" or
	// "off"; errors, replays and broken answers always do.
	AccessLog string
	Logger    *zap.Logger
	Clock     clock.Clock
}

// Handler is the sidecar's http.Handler.
type Handler struct {
	routes     Routes
	oauth      http.Handler
	admin      http.Handler
	detail     func(verbose bool) map[string]any
	metrics    http.Handler
	observer   Observer
	clientKeys atomic.Pointer[[]ClientKey]
	log        *zap.Logger
	clock      clock.Clock
	bodyIdle   time.Duration
	notReady   atomic.Bool
	inFlight   inFlight
	accessLog  accessLog
}

// New builds the sidecar's handler over a table of routes.
func New(opts Options) (*Handler, error) {
	if opts.Routes == nil {
		return nil, errors.New("no route table")
	}
	h := &Handler{
		routes:    opts.Routes,
		oauth:     opts.OAuth,
		admin:     opts.Admin,
		detail:    opts.Detail,
		metrics:   opts.Metrics,
		observer:  opts.Observer,
		log:       opts.Logger,
		clock:     opts.Clock,
		bodyIdle:  opts.BodyIdleTimeout,
		accessLog: accessLog{mode: opts.AccessLog},
	}
	if h.bodyIdle <= 0 {
		h.bodyIdle = 30 * time.Second
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	if h.observer == nil {
		h.observer = nopObserver{}
	}
	h.SetClientKeys(opts.ClientKeys)
	return h, nil
}

// deny answers a call its client key may not make: 403, counted and
// logged with the key's name (never the key).
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, client *ClientKey, route, reason, why string) {
	refuseBody(w, r)
	h.observer.Denied(route, reason)
	h.log.Warn("call denied", zap.String("route", route), zap.String("client", client.Name),
		zap.String("reason", why), requestID(r))
	WriteJSON(w, http.StatusForbidden, errorBody{Error: "forbidden", Route: route, Message: why})
}

// refuseBody is for an answer given without reading the caller's body: the
// connection closes after it instead of draining the body, so a caller that
// trickles a body it may not send holds nothing.
func refuseBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// queryFlag reads a boolean query parameter: present and empty, or a true
// value, is true ("?verbose", "?verbose=1"); "?verbose=false" is false.
func queryFlag(r *http.Request, name string) bool {
	q := r.URL.Query()
	if !q.Has(name) {
		return false
	}
	v := q.Get(name)
	on, err := strconv.ParseBool(v)
	return v == "" || err == nil && on
}

// SetReady sets what /readyz answers; it turns false when draining.
func (h *Handler) SetReady(ready bool) { h.notReady.Store(!ready) }

// Observer is told of every proxied call. Its methods must be cheap and safe
// for concurrent use.
type Observer interface {
	Request(route, method string, status int, took time.Duration)
	// Replay reports what followed an upstream 401: replayed,
	// replayed_refused, body_too_large, no_new_token or token_error.
	Replay(route, outcome string)
	// UnknownRoute reports a call to a route that does not exist.
	UnknownRoute()
	// Denied reports a call refused because its client key may not
	// reach what it asked for: reason is route or account.
	Denied(route, reason string)
	// Aborted reports a call whose answer broke off mid-stream: reason is
	// upstream_failed or caller_left.
	Aborted(route, reason string)
}

type nopObserver struct{}

func (nopObserver) Request(string, string, int, time.Duration) {}
func (nopObserver) Replay(string, string)                      {}
func (nopObserver) UnknownRoute()                              {}
func (nopObserver) Denied(string, string)                      {}
func (nopObserver) Aborted(string, string)                     {}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	switch escaped {
	case "/healthz":
		WriteJSON(w, http.StatusOK, map[string]any{"status": "ok"})
		return
	case "/readyz", "/status":
		// /status is /readyz?verbose: each route's state at a glance.
		verbose := escaped == "/status" || queryFlag(r, "verbose")
		body := map[string]any{"ready": true}
		if h.detail != nil {
			body = h.detail(verbose)
			body["ready"] = true
		}
		status := http.StatusOK
		if h.notReady.Load() {
			body["ready"], body["reason"], status = false, "shutting down", http.StatusServiceUnavailable
		}
		WriteJSON(w, status, body)
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
	if ok && name == "admin" && h.admin != nil {
		h.admin.ServeHTTP(w, r)
		return
	}
	client := h.client(r)
	if client == nil {
		refuseBody(w, r)
		WriteJSON(w, http.StatusUnauthorized, errorBody{Error: "client_key_required",
			Message: "this sidecar serves only callers that present one client key in the " + ClientKeyHeader + " header"})
		return
	}
	var rt *Forwarder
	if ok {
		rt, ok = h.routes.Forwarder(name)
	}
	if !ok {
		refuseBody(w, r)
		h.observer.UnknownRoute()
		h.log.Info("unknown route", zap.String("path", redactedTarget(escaped, r.URL.RawQuery)),
			zap.String("method", r.Method), requestID(r))
		WriteJSON(w, http.StatusNotFound, errorBody{
			Error:   "unknown_route",
			Message: fmt.Sprintf("no route %q; calls go to /ROUTE/path", name),
			Routes:  routesFor(client, h.routes.Names()),
		})
		return
	}
	if !client.mayCall(name) {
		h.deny(w, r, client, name, "route", fmt.Sprintf("client key %s may not call route %s", client.Name, name))
		return
	}
	if r.Method == http.MethodConnect {
		refuseBody(w, r)
		WriteJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed", Route: name, Message: "CONNECT is not proxied"})
		return
	}
	confined, err := confinePath(rest)
	if err != nil {
		refuseBody(w, r)
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "bad_path", Route: name, Message: err.Error()})
		return
	}
	account, asked, err := accountOf(r)
	if err != nil {
		refuseBody(w, r)
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "bad_account", Route: name, Message: err.Error()})
		return
	}
	if !client.mayUse(account, asked) {
		why := fmt.Sprintf("client key %s may not use account %q of route %s", client.Name, account, name)
		if !asked {
			why = fmt.Sprintf("client key %s may use only its own accounts: name one in the %s header", client.Name, AccountHeader)
		}
		h.deny(w, r, client, name, "account", why)
		return
	}
	if asked {
		r = r.WithContext(WithAccount(r.Context(), account))
	}
	target, err := upstreamURL(rt.upstream, confined, r.URL.RawQuery)
	if err != nil {
		refuseBody(w, r)
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "bad_path", Route: name, Message: err.Error()})
		return
	}

	h.forward(w, r, name, rt, confined, target)
}
