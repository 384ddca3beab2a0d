package proxy

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// One proxied call: what the handler and the transport share about it, how
// it ends (replayed, aborted mid-stream, upgraded), and its log line.

// call is what the handler and the transport share about one proxied call.
type call struct {
	route  string
	target *url.URL
	replay replayOutcome
	// upstreamStatus is the upstream's last answer: 101 tells an upgrade,
	// which ReverseProxy writes on the hijacked connection itself.
	upstreamStatus int
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

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

// forward sends one call to its route's reverse proxy, and logs and counts
// how it ended — also when the answer broke off mid-stream, which
// ReverseProxy reports by panicking with http.ErrAbortHandler.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, name string, rt *Forwarder, confined string, target *url.URL) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: h.bodyIdle}
	}
	c := &call{route: name, target: target}
	rec := &statusRecorder{ResponseWriter: w}
	start := h.clock.Now()
	h.inFlight.add()
	defer h.inFlight.done()
	aborted := ""
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			aborted = "upstream_failed"
			if r.Context().Err() != nil {
				aborted = "caller_left"
			}
			h.observer.Aborted(name, aborted)
		}
		h.finish(r, name, confined, rec, c, h.clock.Since(start), aborted)
		if aborted != "" {
			panic(http.ErrAbortHandler) // the server drops the connection
		}
	}()
	rt.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

// finish counts and logs a call.
func (h *Handler) finish(r *http.Request, name, confined string, rec *statusRecorder, c *call, took time.Duration, aborted string) {
	status := rec.statusOrOK()
	if rec.status == 0 && c.upstreamStatus == http.StatusSwitchingProtocols {
		status = http.StatusSwitchingProtocols
	}
	recordCall(r.Context(), name, status, c, aborted)
	h.observer.Request(name, r.Method, status, took)
	if c.replay != replayNone {
		h.observer.Replay(name, c.replay.outcome(status))
	}
	level, msg := zapcore.InfoLevel, "proxied"
	if aborted != "" {
		level, msg = zapcore.WarnLevel, "answer broke off mid-stream"
	}
	if aborted == "" && c.replay == replayNone && status < 400 && !h.accessLog.keep(h.clock.Now()) {
		return
	}
	if ce := h.log.Check(level, msg); ce != nil {
		ce.Write(
			zap.String("route", name),
			zap.String("method", r.Method),
			zap.String("path", redactedTarget(confined, r.URL.RawQuery)),
			zap.Int("status", status),
			zap.Duration("duration", took),
			zap.Int64("bytes", rec.written),
			zap.Bool("replayed", c.replay == replayDone),
			zap.String("after_401", string(c.replay)),
			zap.String("aborted", aborted),
			requestID(r),
			traceIDs(r.Context()),
		)
	}
}

// inFlight counts proxied calls, upgraded ones (WebSocket) included, which
// the HTTP server no longer tracks once hijacked, so that draining can wait
// for them.
type inFlight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to zero; nil while n is zero
}

func (f *inFlight) add() {
	f.mu.Lock()
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
}

func (f *inFlight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 {
		close(f.zero)
		f.zero = nil
	}
	f.mu.Unlock()
}

// Drain waits until no proxied call is in flight, upgraded connections and
// streams included, or ctx ends.
func (h *Handler) Drain(ctx context.Context) error {
	h.inFlight.mu.Lock()
	zero := h.inFlight.zero
	h.inFlight.mu.Unlock()
	if zero == nil {
		return nil
	}
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// idleBody is a caller's body whose reads must make progress: each read
// gets idle to return, so a stalled upload ends instead of holding a
// goroutine and its buffers forever.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// The body is done: the server's own read of the connection
		// (which notices a caller that leaves during a long answer)
		// must not inherit the deadline. After another error the
		// deadline stays passed, so the server closes the connection
		// instead of waiting to drain the rest of a stalled body.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// requestID is the caller's X-Request-Id for log lines, so one call can be
// followed from the caller through the sidecar to the vendor. It is bounded:
// the caller writes it.
func requestID(r *http.Request) zap.Field {
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		return zap.Skip()
	}
	if len(id) > 128 {
		id = id[:128]
	}
	return zap.String("request_id", id)
}

// accessLog decides which answered calls get a line, by ACCESS_LOG.
type accessLog struct {
	mode string
	// second and seen count the calls of the current second, for sampled.
	second, seen atomic.Int64
}

// keep reports whether a call that went well is logged.
func (a *accessLog) keep(now time.Time) bool {
	switch a.mode {
	case "off":
		return false
	case "sampled":
		// The first 10 of each second, then one in 100: a burst still
		// shows, and a steady 20k calls a second writes 210 lines.
		if s := now.Unix(); a.second.Load() != s {
			a.second.Store(s)
			a.seen.Store(0)
		}
		n := a.seen.Add(1)
		return n <= 10 || n%100 == 0
	}
	return true
}
