// Package tracing sets up OpenTelemetry from the standard OTEL_* variables:
// traces go to an OTLP endpoint when one is set, and nowhere — at the cost
// of a no-op tracer — when none is.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// Name is the instrumentation scope of the sidecar's own spans.
const Name = "github.com/authsidecar/authsidecar"

// Tracing is the sidecar's tracer provider and how trace context travels.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	// Enabled is false when no endpoint is set: nothing is recorded.
	Enabled  bool
	shutdown func(context.Context) error
}

// Tracer is the sidecar's tracer.
func (t *Tracing) Tracer() trace.Tracer { return t.Provider.Tracer(Name) }

// Shutdown sends what is buffered and stops.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Off is tracing turned off.
func Off() *Tracing {
	return &Tracing{Provider: noop.NewTracerProvider(), Propagator: propagation.TraceContext{}}
}

// FromEnv sets tracing up as the OTEL_* variables say:
// on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set, unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. The
// exporter reads its own variables (endpoint, headers, timeout,
// certificates); the SDK reads OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES. What the SDK reports later (an export that
// failed, spans dropped) goes to log.
func FromEnv(ctx context.Context, log *zap.Logger) (*Tracing, error) {
	getenv := os.Getenv
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" ||
		strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || getenv("OTEL_TRACES_EXPORTER") == "none" {
		return Off(), nil
	}
	if e := getenv("OTEL_TRACES_EXPORTER"); e != "" && e != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported (otlp or none)", e)
	}
	if err := checkEnv(getenv); err != nil {
		return nil, err
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	variable := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if protocol == "" {
		protocol, variable = getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	var exporter *otlptrace.Exporter
	var err error
	switch protocol {
	case "", "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%s: %q is not supported (http/protobuf or grpc)", variable, protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: starting the OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("authsidecar")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// The SDK's default handler prints with the standard library's logger:
	// a line a JSON log pipeline cannot parse, at no level.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: the OpenTelemetry SDK reports an error", zap.Error(err))
	}))
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &Tracing{
		Provider:   provider,
		Propagator: propagation.TraceContext{},
		Enabled:    true,
		shutdown:   provider.Shutdown,
	}, nil
}

// ServerSpans wraps the sidecar's handler in otelhttp's server spans, which
// continue a caller's W3C traceparent. A span is named by the call's route
// ("proxy viewneo"), or "proxy" for a path that is none of routes(); health,
// readiness and metrics are not traced.
func (t *Tracing) ServerSpans(h http.Handler, routes func() []string) http.Handler {
	return otelhttp.NewHandler(h, "proxy",
		otelhttp.WithTracerProvider(t.Provider),
		otelhttp.WithPropagators(t.Propagator),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/status", "/metrics":
				return false
			}
			return true
		}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
			if slices.Contains(routes(), first) {
				return "proxy " + first
			}
			return "proxy"
		}))
}
