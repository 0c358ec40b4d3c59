package feed

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry"
)

// consumerTelemetry is what one consumer reports: its deliveries by
// result, its lag, and a span per delivery.
type consumerTelemetry struct {
	tracer                 trace.Tracer
	deliveries             metric.Int64Counter
	lag                    metric.Float64Gauge
	ok, failed, parked, of telemetry.Attrs // of: the consumer alone
	name                   attribute.KeyValue
}

func newConsumerTelemetry(mp metric.MeterProvider, tp trace.TracerProvider, name string) *consumerTelemetry {
	m := telemetry.Meter(mp)
	consumer := attribute.String("consumer", name)
	return &consumerTelemetry{
		tracer:     telemetry.Tracer(tp),
		deliveries: telemetry.Counter(m, "usersync.feed.deliveries", "Attempts to deliver a change to a consumer's handler, by consumer and result: ok or failed; and changes parked after the last failed attempt (result parked).", "{change}"),
		lag:        telemetry.Gauge(m, "usersync.feed.lag", "Age of the change a consumer is at (the time since its write), by consumer; 0 when it has caught up.", "s"),
		ok:         telemetry.NewAttrs(consumer, attribute.String("result", "ok")),
		failed:     telemetry.NewAttrs(consumer, attribute.String("result", "failed")),
		parked:     telemetry.NewAttrs(consumer, attribute.String("result", "parked")),
		of:         telemetry.NewAttrs(consumer),
		name:       consumer,
	}
}

// behind records the consumer's lag: the age of the next change it
// handles, or 0 (zero at) when it has caught up.
func (t *consumerTelemetry) behind(ctx context.Context, at, now time.Time) {
	lag := 0.0
	if !at.IsZero() {
		lag = max(now.Sub(at).Seconds(), 0)
	}
	t.lag.Record(ctx, lag, t.of.Record...)
}

// start starts the span of one attempt to deliver ch.
func (t *consumerTelemetry) start(ctx context.Context, ch usersync.Change, attempt int) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, "usersync.feed.deliver")
	if span.IsRecording() {
		span.SetAttributes(t.name, attribute.Int64("usersync.feed.seq", ch.Seq), attribute.String("usersync.feed.outcome", ch.Outcome.String()),
			attribute.Int("usersync.feed.attempt", attempt))
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
