package telemetrytest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Instrumentations are the ways the telemetry benchmarks run: none (the
// instrumentation taken out), noop (no-op providers: what a library user
// who installs no SDK pays), global (the default: the global providers,
// with no SDK installed), sdk (the OpenTelemetry SDK, metrics to a manual
// reader, every span sampled and recorded; the calls outside any trace)
// and sdk-traced (the same, each call below a request's span, so that
// usersync's spans are made too).
var Instrumentations = []string{"none", "noop", "global", "sdk", "sdk-traced"}

// Providers returns the providers of an instrumentation: nil for none and
// global, shut down when b ends.
func Providers(b testing.TB, kind string) (metric.MeterProvider, trace.TracerProvider) {
	switch kind {
	case "noop":
		return metricnoop.NewMeterProvider(), tracenoop.NewTracerProvider()
	case "sdk", "sdk-traced":
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		b.Cleanup(func() { mp.Shutdown(context.Background()); tp.Shutdown(context.Background()) })
		return mp, tp
	}
	return nil, nil // none and global
}

// Traced returns a context with a request's span of tp when kind is
// sdk-traced, else context.Background().
func Traced(b testing.TB, kind string, tp trace.TracerProvider) context.Context {
	if kind != "sdk-traced" {
		return context.Background()
	}
	ctx, span := tp.Tracer("bench").Start(context.Background(), "request")
	b.Cleanup(func() { span.End() })
	return ctx
}
