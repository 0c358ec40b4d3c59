// Package telemetrytest records what usersync reports to OpenTelemetry, in
// memory, for the tests: a manual metric reader and a span recorder of the
// OpenTelemetry SDK. Only tests import it.
package telemetrytest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Recorder holds a MeterProvider and a TracerProvider that record in
// memory.
type Recorder struct {
	MeterProvider  *sdkmetric.MeterProvider
	TracerProvider *sdktrace.TracerProvider
	reader         *sdkmetric.ManualReader
	spans          *tracetest.SpanRecorder
}

// New returns a Recorder, shut down when t ends.
func New(t testing.TB) *Recorder {
	r := &Recorder{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	r.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	r.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	t.Cleanup(func() {
		r.MeterProvider.Shutdown(context.Background())
		r.TracerProvider.Shutdown(context.Background())
	})
	return r
}

// collect returns the data points of the named metric.
func (r *Recorder) collect(t testing.TB, name string) metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	return nil
}

// has reports whether set holds every attribute of want.
func has(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// Sum returns the sum of the named counter's points that carry every
// attribute of want.
func (r *Recorder) Sum(t testing.TB, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var n int64
	if s, ok := r.collect(t, name).(metricdata.Sum[int64]); ok {
		for _, p := range s.DataPoints {
			if has(p.Attributes, want) {
				n += p.Value
			}
		}
	}
	return n
}

// Count returns how many measurements the named histogram's points that
// carry every attribute of want hold.
func (r *Recorder) Count(t testing.TB, name string, want ...attribute.KeyValue) uint64 {
	t.Helper()
	var n uint64
	if h, ok := r.collect(t, name).(metricdata.Histogram[float64]); ok {
		for _, p := range h.DataPoints {
			if has(p.Attributes, want) {
				n += p.Count
			}
		}
	}
	return n
}

// Gauge returns the last value of the named gauge's point that carries
// every attribute of want, and whether there is one.
func (r *Recorder) Gauge(t testing.TB, name string, want ...attribute.KeyValue) (float64, bool) {
	t.Helper()
	if g, ok := r.collect(t, name).(metricdata.Gauge[float64]); ok {
		for _, p := range g.DataPoints {
			if has(p.Attributes, want) {
				return p.Value, true
			}
		}
	}
	return 0, false
}

// Spans returns the ended spans of the given name.
func (r *Recorder) Spans(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// Attr returns the value of a span's attribute, and whether it has it.
func Attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}
