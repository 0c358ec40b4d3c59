package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// observability is the app's OpenTelemetry SDK: a MeterProvider whose
// metrics GET /metrics serves in the Prometheus text format, and a
// TracerProvider that records spans (export them by adding an exporter,
// OTLP say, with sdktrace.WithBatcher), so that usersync's log lines carry
// the trace ID of their request.
type observability struct {
	meters  *sdkmetric.MeterProvider
	tracers *sdktrace.TracerProvider
	metrics http.Handler // GET /metrics
}

func newObservability() (*observability, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	return &observability{
		meters:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
		tracers: sdktrace.NewTracerProvider(),
		metrics: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}, nil
}

// traced starts a span per request, named after its route once the mux
// has matched it: usersync's spans and log lines join it.
func (o *observability) traced(next http.Handler) http.Handler {
	tracer := o.tracers.Tracer("chat")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tracer.Start(r.Context(), "HTTP "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)
		next.ServeHTTP(w, r)
		if r.Pattern != "" {
			span.SetName(r.Pattern)
		}
	})
}

// shutdown flushes and stops the providers.
func (o *observability) shutdown(ctx context.Context) error {
	return errors.Join(o.meters.Shutdown(ctx), o.tracers.Shutdown(ctx))
}
