package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/internal/redact"
)

// errorBody is every error the sidecar answers itself. Error is a stable
// code for programs; Message is for people and never holds a secret.
type errorBody struct {
	Error   string `json:"error"`
	Route   string `json:"route,omitempty"`
	Message string `json:"message"`
	// RetryAfterSeconds repeats the Retry-After header for clients that
	// only read bodies.
	RetryAfterSeconds int      `json:"retry_after_seconds,omitempty"`
	ConsentURL        string   `json:"consent_url,omitempty"`
	Routes            []string `json:"routes,omitempty"`
}

// UnknownRouteError is an operation on a route that is not configured.
type UnknownRouteError struct {
	Name       string
	Configured []string
}

func (e *UnknownRouteError) Error() string {
	return fmt.Sprintf("no route %q (configured: %v)", e.Name, e.Configured)
}

// WriteError answers a call the sidecar refuses itself, in the shape of
// every error it answers: a stable code, the route, and a message for people.
func WriteError(w http.ResponseWriter, status int, code, route, message string) {
	WriteJSON(w, status, errorBody{Error: code, Route: route, Message: message})
}

// WriteJSON answers body as JSON, never cached: every answer the sidecar
// makes itself.
func WriteJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// proxyError answers a call the reverse proxy could not complete.
func (e *Engine) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	route := ""
	if c := callFrom(r.Context()); c != nil {
		route = c.route
	}
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		// The caller went away; there is nobody to answer. 499 is what
		// the log line shows, after nginx.
		if rec, ok := w.(*statusRecorder); ok {
			rec.status = 499
		}
		return
	}

	var te *tokenError
	var be *bodyError
	var rl *RateLimitedError
	switch {
	case errors.As(err, &rl):
		writeRateLimited(w, rl)
	case errors.As(err, &te):
		e.tokenError(w, route, te.err)
	case errors.As(err, &be):
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request_body", Route: route, Message: err.Error()})
	case isTimeout(err):
		e.log.Warn("upstream timed out", zap.String("route", route), zap.Error(err), traceIDs(r.Context()))
		WriteJSON(w, http.StatusGatewayTimeout, errorBody{Error: "upstream_timeout", Route: route, Message: err.Error()})
	default:
		e.log.Warn("upstream unreachable", zap.String("route", route), zap.Error(err), traceIDs(r.Context()))
		WriteJSON(w, http.StatusBadGateway, errorBody{Error: "upstream_unreachable", Route: route, Message: err.Error()})
	}
}

// tokenError answers a call for which no token could be had: 503 with
// Retry-After when it is likely to pass, 502 when the credentials were
// refused or a person must give consent.
func (e *Engine) tokenError(w http.ResponseWriter, route string, err error) {
	body := errorBody{Route: route, Message: err.Error()}
	status := http.StatusBadGateway
	var unknown *auth.UnknownAccountError
	if errors.As(err, &unknown) {
		body.Error = "unknown_account"
		WriteJSON(w, http.StatusNotFound, body)
		return
	}
	switch auth.KindOf(err) {
	case auth.Rejected:
		body.Error = "token_rejected"
	case auth.ConsentRequired:
		body.Error = "consent_required"
		var ce *auth.ConsentError
		if errors.As(err, &ce) {
			body.ConsentURL = ce.StartPath
		}
	default:
		body.Error = "token_unavailable"
		status = http.StatusServiceUnavailable
		secs := 1
		var fe *auth.FetchError
		if errors.As(err, &fe) && !fe.RetryAfter.IsZero() {
			secs = max(1, int(math.Ceil(e.clock.Until(fe.RetryAfter).Seconds())))
		}
		body.RetryAfterSeconds = secs
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	WriteJSON(w, status, body)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusRecorder notes what a handler answered, for the log line. Unwrap
// lets http.ResponseController (used by ReverseProxy to flush) reach the
// real writer.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	written int64
}

func (s *statusRecorder) WriteHeader(code int) {
	// 1xx answers are interim, but for 101 Switching Protocols, which is
	// how an upgraded (WebSocket) call ends as far as HTTP is concerned.
	if s.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.written += int64(n)
	return n, err
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) statusOrOK() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// redactedTarget is a call's path and query for logs, with the values of
// parameters that look like credentials replaced.
func redactedTarget(path, rawQuery string) string {
	if path == "" {
		path = "/"
	}
	if rawQuery == "" {
		return path
	}
	parts := strings.Split(rawQuery, "&")
	for i, part := range parts {
		key, _, hasValue := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		if hasValue && redact.SecretName(key) {
			parts[i] = url.QueryEscape(key) + "=REDACTED"
		}
	}
	return path + "?" + strings.Join(parts, "&")
}
