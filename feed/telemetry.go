package feed

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry"
)

// consumerTelemetry is what one consumer reports: its deliveries by
// result, its lag while this replica runs it, and a span per delivery.
type consumerTelemetry struct {
	tracer             trace.Tracer
	deliveries         metric.Int64Counter
	ok, failed, parked telemetry.Attrs
	name               attribute.KeyValue

	holding atomic.Bool  // this replica holds the consumer's lease
	at      atomic.Int64 // Unix ns of the write of the change it is at; 0 when caught up
}

func newConsumerTelemetry(mp metric.MeterProvider, tp trace.TracerProvider, name string, now func() time.Time) *consumerTelemetry {
	m := telemetry.Meter(mp)
	consumer := attribute.String("consumer", name)
	t := &consumerTelemetry{
		tracer:     telemetry.Tracer(tp),
		deliveries: telemetry.Counter(m, "usersync.feed.deliveries", "Attempts to deliver a change to a consumer's handler, by consumer and result: ok or failed; and changes parked after their last failed attempt (result parked).", "{change}"),
		ok:         telemetry.NewAttrs(consumer, attribute.String("result", "ok")),
		failed:     telemetry.NewAttrs(consumer, attribute.String("result", "failed")),
		parked:     telemetry.NewAttrs(consumer, attribute.String("result", "parked")),
		name:       consumer,
	}
	// Observed when collected, and only by the replica that runs the
	// consumer: a replica that lost the lease (or stopped) reports none,
	// rather than its last value forever; a change being retried ages.
	lag := telemetry.ObservableGauge(m, "usersync.feed.lag", "Age of the change a consumer is at (the time since its write), by consumer, from the replica that runs it; 0 when it has caught up.", "s")
	telemetry.Observe(m, lag, func() (float64, bool) {
		if !t.holding.Load() {
			return 0, false
		}
		age := 0.0
		if at := t.at.Load(); at != 0 {
			age = max(now().Sub(time.Unix(0, at)).Seconds(), 0)
		}
		return age, true
	}, metric.WithAttributeSet(attribute.NewSet(consumer)))
	return t
}

// hold records whether this replica holds the consumer's lease.
func (t *consumerTelemetry) hold(held bool) {
	t.at.Store(0)
	t.holding.Store(held)
}

// behind records the write time of the change the consumer is at, or that
// it has caught up (zero at).
func (t *consumerTelemetry) behind(at time.Time) {
	if at.IsZero() {
		t.at.Store(0)
	} else {
		t.at.Store(at.UnixNano())
	}
}

// start starts the span of one attempt to deliver ch.
func (t *consumerTelemetry) start(ctx context.Context, ch usersync.Change, attempt int) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, "usersync.feed.deliver")
	if span.IsRecording() {
		span.SetAttributes(t.name, attribute.Int64("usersync.feed.seq", ch.Seq), attribute.String("usersync.feed.outcome", ch.Outcome.String()),
			attribute.String("usersync.feed.entity", ch.Entity.String()), attribute.Int("usersync.feed.attempt", attempt))
	}
	return ctx, span
}

// delivered counts an attempt (ok or failed) and ends its span.
func (t *consumerTelemetry) delivered(ctx context.Context, span trace.Span, err error) {
	if err == nil {
		t.deliveries.Add(ctx, 1, t.ok.Add...)
	} else {
		t.deliveries.Add(ctx, 1, t.failed.Add...)
		span.SetStatus(codes.Error, "the handler failed") // its error may quote data
	}
	span.End()
}

// park counts a parked change.
func (t *consumerTelemetry) park(ctx context.Context) {
	t.deliveries.Add(ctx, 1, t.parked.Add...)
}
