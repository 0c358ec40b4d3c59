package reconcile

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync/internal/telemetry"
)

// runTelemetry is what a Reconciler reports: runs by result, users by
// outcome, a span per run and one per page.
type runTelemetry struct {
	tracer trace.Tracer
	runs   metric.Int64Counter
	users  metric.Int64Counter
	issuer attribute.KeyValue
}

func newRunTelemetry(mp metric.MeterProvider, tp trace.TracerProvider, issuer string) *runTelemetry {
	m := telemetry.Meter(mp)
	return &runTelemetry{
		tracer: telemetry.Tracer(tp),
		runs:   telemetry.Counter(m, "usersync.reconcile.runs", "Reconcile runs, by issuer and result: complete, failed, refused (a guard: ErrMassDelete, ErrForeignList), canceled or skipped (another replica runs or ran one).", "{run}"),
		users:  telemetry.Counter(m, "usersync.reconcile.users", "Users a reconcile listed or deleted, by issuer and outcome: created, updated, unchanged, skipped (cannot be stored) or deleted.", "{user}"),
		issuer: attribute.String("issuer", issuer),
	}
}

// start starts the span of a run.
func (t *runTelemetry) start(ctx context.Context) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "usersync.reconcile", trace.WithAttributes(t.issuer))
}

// ran counts a run and its users, and ends its span.
func (t *runTelemetry) ran(ctx context.Context, span trace.Span, report Report, err error) {
	result := "complete"
	switch {
	case errors.Is(err, ErrRunning), errors.Is(err, errFresh):
		result = "skipped"
	case errors.Is(err, ErrMassDelete), errors.Is(err, ErrForeignList):
		result = "refused"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		result = "canceled" // a shutdown, not a failure
	case err != nil:
		result = "failed"
	}
	t.runs.Add(ctx, 1, metric.WithAttributes(t.issuer, attribute.String("result", result)))
	for _, c := range []struct {
		outcome string
		n       int
	}{{"created", report.Created}, {"updated", report.Updated}, {"unchanged", report.Unchanged}, {"skipped", report.Skipped}, {"deleted", report.Deleted}} {
		if c.n > 0 {
			t.users.Add(ctx, int64(c.n), metric.WithAttributes(t.issuer, attribute.String("outcome", c.outcome)))
		}
	}
	span.SetAttributes(attribute.String("usersync.reconcile.result", result), attribute.Int("usersync.reconcile.listed", report.Listed),
		attribute.Int("usersync.reconcile.deleted", report.Deleted))
	if result == "failed" || result == "refused" {
		span.SetStatus(codes.Error, result)
	}
	span.End()
}

// page starts the span of the write of one page of n users.
func (t *runTelemetry) page(ctx context.Context, n int) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "usersync.reconcile.page", trace.WithAttributes(t.issuer, attribute.Int("usersync.reconcile.page_size", n)))
}
