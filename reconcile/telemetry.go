package reconcile

import (
	"context"
	"errors"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync/internal/telemetry"
)

// runTelemetry is what a reconciler reports: runs by result, items by
// outcome, a span per run and one per page.
type runTelemetry struct {
	tracer trace.Tracer
	span   string // the name of a run's span
	runs   metric.Int64Counter
	items  metric.Int64Counter
	attrs  []attribute.KeyValue // of a run: the issuer, and what it reconciles
	issuer attribute.KeyValue
}

const runsDesc = "Reconcile runs, by issuer, result (complete, failed, refused: a guard, ErrMassDelete or ErrForeignList; canceled or skipped: another replica runs or ran one) and, for organizations, entity."

// newRunTelemetry returns the telemetry of the users reconciler of issuer.
func newRunTelemetry(mp metric.MeterProvider, tp trace.TracerProvider, issuer string) *runTelemetry {
	m := telemetry.Meter(mp)
	iss := attribute.String("issuer", issuer)
	return &runTelemetry{
		tracer: telemetry.Tracer(tp), span: "usersync.reconcile",
		runs:  telemetry.Counter(m, "usersync.reconcile.runs", runsDesc, "{run}"),
		items: telemetry.Counter(m, "usersync.reconcile.users", "Users a reconcile listed or deleted, by issuer and outcome: created, updated, unchanged, skipped (cannot be stored) or deleted.", "{user}"),
		attrs: []attribute.KeyValue{iss}, issuer: iss,
	}
}

// newOrgTelemetry returns the telemetry of the organizations reconciler of
// issuer: its runs carry entity=organization, its items
// (usersync.reconcile.items) entity=organization or membership.
func newOrgTelemetry(mp metric.MeterProvider, tp trace.TracerProvider, issuer string) *runTelemetry {
	m := telemetry.Meter(mp)
	iss := attribute.String("issuer", issuer)
	return &runTelemetry{
		tracer: telemetry.Tracer(tp), span: "usersync.reconcile.organizations",
		runs:  telemetry.Counter(m, "usersync.reconcile.runs", runsDesc, "{run}"),
		items: telemetry.Counter(m, "usersync.reconcile.items", "Organizations and memberships a reconcile listed or deleted, by issuer, entity (organization, membership) and outcome: created, updated, unchanged, skipped (cannot be stored) or deleted.", "{item}"),
		attrs: []attribute.KeyValue{iss, entityOrganization}, issuer: iss,
	}
}

// The entity attribute of the organizations reconciler's metrics and
// spans.
var (
	entityOrganization = attribute.String("entity", "organization")
	entityMembership   = attribute.String("entity", "membership")
)

// start starts the span of a run.
func (t *runTelemetry) start(ctx context.Context) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, t.span, trace.WithAttributes(t.issuer))
}

// outcomes are the counts of a run's items of one entity by outcome.
type outcomes struct {
	created, updated, unchanged, skipped, deleted int
	entity                                        attribute.KeyValue // unset for users
}

// result names the result of a run that ended with err.
func result(err error) string {
	switch {
	case errors.Is(err, ErrRunning), errors.Is(err, errFresh):
		return "skipped"
	case errors.Is(err, ErrMassDelete), errors.Is(err, ErrForeignList):
		return "refused"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled" // a shutdown, not a failure
	case err != nil:
		return "failed"
	}
	return "complete"
}

// ran counts a run that ended with err and its items, and ends its span,
// with the items listed and deleted.
func (t *runTelemetry) ran(ctx context.Context, span trace.Span, err error, listed, deleted int, items ...outcomes) {
	result := result(err)
	t.runs.Add(ctx, 1, metric.WithAttributes(append(slices.Clip(t.attrs), attribute.String("result", result))...))
	for _, o := range items {
		for _, c := range []struct {
			outcome string
			n       int
		}{{"created", o.created}, {"updated", o.updated}, {"unchanged", o.unchanged}, {"skipped", o.skipped}, {"deleted", o.deleted}} {
			if c.n <= 0 {
				continue
			}
			attrs := []attribute.KeyValue{t.issuer, attribute.String("outcome", c.outcome)}
			if o.entity.Valid() {
				attrs = append(attrs, o.entity)
			}
			t.items.Add(ctx, int64(c.n), metric.WithAttributes(attrs...))
		}
	}
	span.SetAttributes(attribute.String("usersync.reconcile.result", result), attribute.Int("usersync.reconcile.listed", listed),
		attribute.Int("usersync.reconcile.deleted", deleted))
	if result == "failed" || result == "refused" {
		span.SetStatus(codes.Error, result)
	}
	span.End()
}

// page starts the span of the write of one page of n items (of entity, if
// set).
func (t *runTelemetry) page(ctx context.Context, n int, entity ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs := append([]attribute.KeyValue{t.issuer, attribute.Int("usersync.reconcile.page_size", n)}, entity...)
	return t.tracer.Start(ctx, "usersync.reconcile.page", trace.WithAttributes(attrs...))
}
