// Package metrics is the sidecar's Prometheus instrumentation. Labels are
// route names and small fixed vocabularies: never a path, a query or a secret.
package metrics

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector, on a registry of its own.
type Metrics struct {
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	replays         *prometheus.CounterVec
	refreshes       *prometheus.CounterVec
	refreshDuration *prometheus.HistogramVec
	lockWaits       *prometheus.CounterVec
	storeErrors     *prometheus.CounterVec
	storeDegraded   prometheus.Gauge
	tokenExpiry     *prometheus.GaugeVec
	unknownRoutes   prometheus.Counter
	storeDataLost   prometheus.Counter
	aborted         *prometheus.CounterVec
	secretFiles     *prometheus.CounterVec
	denied          *prometheus.CounterVec
	rateLimited     *prometheus.CounterVec
	// routes holds each route's request series (*routeSeries).
	routes sync.Map
}

// New registers the collectors, the Go runtime's and the process's among
// them.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_requests_total",
			Help: "Proxied requests, by route, method and status class (2xx, 4xx, ...).",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authsidecar_request_duration_seconds",
			Help:    "Time to serve a proxied request: token, replay and streaming the whole answer included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"route", "code"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_replays_total",
			Help: "What followed an upstream 401: replayed (and the replay's status class), body_too_large, no_new_token, token_error.",
		}, []string{"route", "outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_token_refreshes_total",
			Help: "Token refreshes by result: success, adopted (a sibling's token from the store), unavailable, rejected, consent_required.",
		}, []string{"route", "result"}),
		refreshDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authsidecar_token_refresh_duration_seconds",
			Help:    "Time a refresh took, lock waits included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 9),
		}, []string{"route"}),
		lockWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_refresh_lock_waits_total",
			Help: "Times a replica found the route's refresh lock held by another and waited for its token.",
		}, []string{"route"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_store_errors_total",
			Help: "Token store operations that failed.",
		}, []string{"route"}),
		storeDegraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authsidecar_store_degraded",
			Help: "1 while the shared token store (Redis) does not answer and tokens are served from memory.",
		}),
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authsidecar_token_expiry_timestamp_seconds",
			Help: "When the route's current token expires (Unix time); alert before it passes.",
		}, []string{"route"}),
		secretFiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_secret_file_errors_total",
			Help: "Times a watched secret file (X_FILE) changed but could not be used; its last good value stays.",
		}, []string{"variable"}),
		aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_aborted_requests_total",
			Help: "Proxied calls whose answer broke off mid-stream: upstream_failed, or caller_left.",
		}, []string{"route", "reason"}),
		storeDataLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authsidecar_store_data_lost_total",
			Help: "Times this replica found that the shared store had lost its data (a restart without persistence, a failover, FLUSHALL) and held rotating refreshes back while the fleet wrote its tokens back.",
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_denied_requests_total",
			Help: "Calls refused (403) because the caller's client key may not call the route (reason route) or use the account (reason account).",
		}, []string{"route", "reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_rate_limited_requests_total",
			Help: "Calls held back from the vendor: reason cooldown (the vendor asked for a pause) or limit (the route's RATE_LIMIT); action waited or refused (answered 429 by the sidecar).",
		}, []string{"route", "reason", "action"}),
		unknownRoutes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authsidecar_unknown_route_requests_total",
			Help: "Calls to a route that is not configured (a typo in a caller's URL, or a scan).",
		}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.replays, m.refreshes, m.refreshDuration,
		m.lockWaits, m.storeErrors, m.storeDegraded, m.tokenExpiry, m.unknownRoutes, m.storeDataLost, m.aborted, m.secretFiles, m.denied, m.rateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Request records one proxied request. The route's series are looked up
// once each and kept (routeSeries): hashing three label values on every
// call costs more than the rest of the bookkeeping.
func (m *Metrics) Request(route, method string, status int, d time.Duration) {
	rs := m.seriesOf(route)
	mi, ci := methodIndex(method), classIndex(status)
	rs.requests[mi][ci].get(func() prometheus.Observer {
		return counterObserver{m.requests.WithLabelValues(route, methods[mi], classes[ci])}
	}).Observe(1)
	rs.duration[ci].get(func() prometheus.Observer {
		return m.duration.WithLabelValues(route, classes[ci])
	}).Observe(d.Seconds())
}

// methods keeps the method label to a fixed set: a client sending made-up
// methods must not grow the series without bound.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}

func methodIndex(method string) int {
	for i, m := range methods[:len(methods)-1] {
		if m == method {
			return i
		}
	}
	return len(methods) - 1
}

var classes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

func classIndex(status int) int {
	if status < 100 || status > 599 {
		return len(classes) - 1
	}
	return status/100 - 1
}

// routeSeries are one route's request series, made on first use.
type routeSeries struct {
	requests [len(methods)][len(classes)]lazySeries
	duration [len(classes)]lazySeries
}

type lazySeries struct {
	p atomic.Pointer[prometheus.Observer]
}

func (l *lazySeries) get(make func() prometheus.Observer) prometheus.Observer {
	if o := l.p.Load(); o != nil {
		return *o
	}
	o := make()
	l.p.Store(&o) // a race makes the same child twice: harmless
	return o
}

// counterObserver lets a counter sit where an observer does.
type counterObserver struct{ c prometheus.Counter }

func (c counterObserver) Observe(float64) { c.c.Inc() }

func (m *Metrics) seriesOf(route string) *routeSeries {
	if rs, ok := m.routes.Load(route); ok {
		return rs.(*routeSeries)
	}
	rs, _ := m.routes.LoadOrStore(route, &routeSeries{})
	return rs.(*routeSeries)
}

// Replay records what followed a 401.
func (m *Metrics) Replay(route, outcome string) { m.replays.WithLabelValues(route, outcome).Inc() }

// SecretFileError records a secret file that could not be used.
func (m *Metrics) SecretFileError(variable string) { m.secretFiles.WithLabelValues(variable).Inc() }

// Aborted records a call whose answer broke off mid-stream.
func (m *Metrics) Aborted(route, reason string) { m.aborted.WithLabelValues(route, reason).Inc() }

// StoreDataLost records that the shared store lost its data.
func (m *Metrics) StoreDataLost() { m.storeDataLost.Inc() }

// Denied records a call its client key may not make.
func (m *Metrics) Denied(route, reason string) { m.denied.WithLabelValues(route, reason).Inc() }

// UnknownRoute records a call to a route that is not configured.
func (m *Metrics) UnknownRoute() { m.unknownRoutes.Inc() }

// Refresh records a refresh and its result.
func (m *Metrics) Refresh(route, result string, d time.Duration) {
	m.refreshes.WithLabelValues(route, result).Inc()
	m.refreshDuration.WithLabelValues(route).Observe(d.Seconds())
}

// LockWait records a wait for a sibling's refresh.
func (m *Metrics) LockWait(route string) { m.lockWaits.WithLabelValues(route).Inc() }

// StoreError records a failed store operation.
func (m *Metrics) StoreError(route string) { m.storeErrors.WithLabelValues(route).Inc() }

// StoreDegraded records the shared store's state.
func (m *Metrics) StoreDegraded(degraded bool) {
	v := 0.0
	if degraded {
		v = 1
	}
	m.storeDegraded.Set(v)
}

// TokenExpiry records when route's token expires; zero clears it.
func (m *Metrics) TokenExpiry(route string, expiry time.Time) {
	if expiry.IsZero() {
		m.tokenExpiry.DeleteLabelValues(route)
		return
	}
	m.tokenExpiry.WithLabelValues(route).Set(float64(expiry.Unix()))
}
