package proxy

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Tracing of the way out: a client span for the upstream call and one for
// the replay, and whether the vendor sees a traceparent. The span records
// the method, the host, the status, the route and account — not the URL,
// whose query may carry the token (Viadeo), nor any header. otelhttp's
// Transport would record url.full, so the span is made here.

// Traceparent headers of W3C Trace Context, which carry trace ids.
var traceHeaders = []string{"Traceparent", "Tracestate"}

// upstreamSpan starts the client span of one attempt.
func (t *tokenTransport) upstreamSpan(req *http.Request) (context.Context, trace.Span) {
	ctx := req.Context()
	if t.tracer == nil {
		return ctx, nil
	}
	name := "upstream"
	if c := callFrom(ctx); c != nil && c.replay == replayDone {
		name = "upstream replay"
	}
	attrs := []attribute.KeyValue{attribute.String("authsidecar.route", t.route),
		semconv.HTTPRequestMethodKey.String(req.Method), semconv.ServerAddress(req.URL.Hostname())}
	if account, ok := AccountFrom(ctx); ok {
		attrs = append(attrs, attribute.String("authsidecar.account", account))
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endUpstreamSpan ends span with the upstream's answer (or its failure).
func endUpstreamSpan(span trace.Span, resp *http.Response, err error) {
	if span == nil {
		return
	}
	switch {
	case err != nil:
		span.SetStatus(codes.Error, "upstream unreachable")
	default:
		span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
		if resp.StatusCode >= 500 {
			span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
		}
	}
	span.End()
}

// propagate sets what the vendor learns of the trace: by default nothing
// (trace ids are internal); with forwarding on, this attempt's span as its
// parent, or the caller's traceparent when the sidecar does not trace.
func (t *tokenTransport) propagate(ctx context.Context, out *http.Request) {
	if t.forwardTrace && t.tracer == nil {
		return // the caller's own, as it came
	}
	for _, h := range traceHeaders {
		out.Header.Del(h)
	}
	if t.forwardTrace {
		t.propagator.Inject(ctx, propagation.HeaderCarrier(out.Header))
	}
}

// recordCall puts what a proxied call came to on its server span.
func recordCall(ctx context.Context, route string, status int, c *call, aborted string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	outcome := "answered"
	switch {
	case aborted != "":
		outcome = aborted
	case c.replay != replayNone:
		outcome = string(c.replay)
	}
	attrs := []attribute.KeyValue{attribute.String("authsidecar.route", route),
		attribute.String("authsidecar.outcome", outcome), attribute.Bool("authsidecar.replayed", c.replay == replayDone),
		semconv.HTTPResponseStatusCode(status)}
	if account, ok := AccountFrom(ctx); ok {
		attrs = append(attrs, attribute.String("authsidecar.account", account))
	}
	span.SetAttributes(attrs...)
}

// traceIDs are a traced call's trace and span ids, for its log lines.
func traceIDs(ctx context.Context) zap.Field {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return zap.Skip()
	}
	return zap.Inline(traceIDFields{sc})
}

type traceIDFields struct{ sc trace.SpanContext }

func (f traceIDFields) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("trace_id", f.sc.TraceID().String())
	enc.AddString("span_id", f.sc.SpanID().String())
	return nil
}
