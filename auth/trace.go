package auth

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Spans of getting tokens: a refresh, the wait for a sibling's lock, the
// token request itself. Attributes name the route, the account and the
// outcome — never a token, a secret or an assertion. A nil tracer (tracing
// off) records nothing and costs nothing.

// spanStart starts a span when tracing is on; end it with spanEnd.
func spanStart(ctx context.Context, tracer trace.Tracer, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if tracer == nil {
		return ctx, nil
	}
	return tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// spanEnd ends span with its outcome: the error's kind, never its text
// (a vendor's error_description is the vendor's words).
func spanEnd(span trace.Span, outcome string, err error) {
	if span == nil {
		return
	}
	if err != nil {
		outcome = KindOf(err).String()
		span.SetStatus(codes.Error, outcome)
	}
	span.SetAttributes(attribute.String("authsidecar.outcome", outcome))
	span.End()
}

// routeAttrs are a token's route and account, as span attributes.
func routeAttrs(route, account string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("authsidecar.route", route)}
	if account != "" {
		attrs = append(attrs, attribute.String("authsidecar.account", account))
	}
	return attrs
}

// linkToRefresh records, on the caller's span, that the call waited for a
// refresh another call started.
func linkToRefresh(ctx context.Context, refresh trace.SpanContext) {
	if refresh.IsValid() {
		trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: refresh,
			Attributes: []attribute.KeyValue{attribute.String("authsidecar.link", "waited_for_refresh")}})
	}
}
