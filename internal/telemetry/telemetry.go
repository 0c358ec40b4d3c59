// Package telemetry holds what usersync's packages share to report to
// OpenTelemetry: the instrumentation scope, instruments that never fail,
// measurement options computed once per set of attributes (so that
// recording a measurement allocates nothing), and a log handler that adds
// the active span's trace ID to every line. It depends on the
// OpenTelemetry API only; the app installs the SDK.
package telemetry

import (
	"context"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of every usersync meter and tracer.
const Scope = "github.com/usersync/usersync"

// Meter returns the usersync meter of mp, or of the global provider when
// mp is nil (a no-op until the app installs an SDK).
func Meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(Scope)
}

// Tracer returns the usersync tracer of tp, or of the global provider
// when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(Scope)
}

// Counter returns the named counter of m. An instrument the SDK refuses
// is reported to otel.Handle and replaced by a no-op one: telemetry never
// fails the library.
func Counter(m metric.Meter, name, desc, unit string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
	if err != nil {
		otel.Handle(err)
		return noop.Int64Counter{}
	}
	return c
}

// ObservableGauge returns the named gauge of m whose value a callback
// observes at collection (see Observe), or a no-op one (see Counter).
func ObservableGauge(m metric.Meter, name, desc, unit string) metric.Float64ObservableGauge {
	g, err := m.Float64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit(unit))
	if err != nil {
		otel.Handle(err)
		return noop.Float64ObservableGauge{}
	}
	return g
}

// Observe registers f to observe g at each collection, with opts, for
// the life of the meter provider: f returns the value, or false to
// observe nothing. A failed registration is reported to otel.Handle.
func Observe(m metric.Meter, g metric.Float64ObservableGauge, f func() (float64, bool), opts ...metric.ObserveOption) {
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if v, ok := f(); ok {
			o.ObserveFloat64(g, v, opts...)
		}
		return nil
	}, g)
	if err != nil {
		otel.Handle(err)
	}
}

// DurationBuckets are the bucket boundaries of duration histograms, in
// seconds: from half a millisecond (an SQLite read) to 10 seconds.
var DurationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Seconds returns the named histogram of durations in seconds of m, or a
// no-op one (see Counter).
func Seconds(m metric.Meter, name, desc string) metric.Float64Histogram {
	h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(DurationBuckets...))
	if err != nil {
		otel.Handle(err)
		return noop.Float64Histogram{}
	}
	return h
}

// Attrs are the options that record a measurement with one set of
// attributes, computed once: passing them allocates nothing.
type Attrs struct {
	Add    []metric.AddOption
	Record []metric.RecordOption
}

// NewAttrs returns the options for the attributes kv.
func NewAttrs(kv ...attribute.KeyValue) Attrs {
	o := metric.WithAttributeSet(attribute.NewSet(kv...))
	return Attrs{Add: []metric.AddOption{o}, Record: []metric.RecordOption{o}}
}

// Cache holds the Attrs of up to Max keys, made by New on first use; the
// keys after that share the Attrs of Overflow, so that a sender-chosen
// value can never grow a metric's cardinality without bound.
type Cache[K comparable] struct {
	New      func(K) Attrs
	Max      int
	Overflow K

	mu sync.RWMutex
	m  map[K]Attrs
}

// Get returns the Attrs of k.
func (c *Cache[K]) Get(k K) Attrs {
	c.mu.RLock()
	a, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.m[k]; ok {
		return a
	}
	if c.m == nil {
		c.m = make(map[K]Attrs)
	}
	if len(c.m) >= c.Max {
		k = c.Overflow
		if a, ok := c.m[k]; ok {
			return a
		}
	}
	a = c.New(k)
	c.m[k] = a
	return a
}

// Logger returns l (slog.Default() if nil) with a handler that adds the
// trace and span IDs of the context's active span, if any, to each line
// (as trace_id and span_id, at the top level even when the line is in a
// group opened after Logger), so that a log line leads to its trace.
func Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		l = slog.Default()
	}
	if _, ok := l.Handler().(*traceHandler); ok {
		return l
	}
	return slog.New(&traceHandler{base: l.Handler(), derived: l.Handler()})
}

// traceHandler adds trace IDs to the records of derived: base with chain
// (the WithAttrs and WithGroup calls since Logger) applied.
type traceHandler struct {
	base, derived slog.Handler
	chain         []func(slog.Handler) slog.Handler
	grouped       bool // chain opens a group
}

func (h *traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.derived.Enabled(ctx, l)
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return h.derived.Handle(ctx, r)
	}
	ids := []slog.Attr{slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())}
	if !h.grouped { // the usual case: the IDs join the record
		r = r.Clone()
		r.AddAttrs(ids...)
		return h.derived.Handle(ctx, r)
	}
	// Inside a group: the IDs go on the base, and the chain after them.
	d := h.base.WithAttrs(ids)
	for _, f := range h.chain {
		d = f(d)
	}
	return d.Handle(ctx, r)
}

func (h *traceHandler) with(f func(slog.Handler) slog.Handler, group bool) *traceHandler {
	return &traceHandler{base: h.base, derived: f(h.derived), chain: append(h.chain[:len(h.chain):len(h.chain)], f), grouped: h.grouped || group}
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.with(func(d slog.Handler) slog.Handler { return d.WithAttrs(as) }, false)
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	return h.with(func(d slog.Handler) slog.Handler { return d.WithGroup(name) }, name != "")
}
