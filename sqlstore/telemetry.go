package sqlstore

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry"
)

// storeTelemetry is what a Store reports: each operation's duration and
// outcome, retried statements, and a span per operation.
type storeTelemetry struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	retries  metric.Int64Counter
	attrs    telemetry.Cache[opOutcome]
	retried  telemetry.Attrs
	system   attribute.KeyValue // db.system.name
}

type opOutcome struct{ op, outcome string }

// The operations, as their label values: the exported methods of the
// Store, each measured as one operation (see Config.MeterProvider).
const (
	opGet                  = "get"
	opGetByExternalID      = "get_by_external_id"
	opGetByTokenIdentifier = "get_by_token_identifier"
	opGetMany              = "get_many"
	opList                 = "list"
	opCount                = "count"
	opUpsert               = "upsert"
	opDelete               = "delete"
	opUpsertBatch          = "upsert_batch"
	opChanges              = "changes"
	opPruneChanges         = "prune_changes"
	opLeaseCursors         = "lease_cursors"
	opAcquireLease         = "acquire_lease"
	opRenewLease           = "renew_lease"
	opReleaseLease         = "release_lease"
	opMigrate              = "migrate"

	// The operations of orgs.Store.
	opUpsertOrganization  = "upsert_organization"
	opUpsertOrganizations = "upsert_organizations"
	opDeleteOrganization  = "delete_organization"
	opUpsertMembership    = "upsert_membership"
	opUpsertMemberships   = "upsert_memberships"
	opDeleteMembership    = "delete_membership"
	opOrganization        = "get_organization"
	opOrganizations       = "list_organizations"
	opMember              = "get_member"
	opMemberships         = "list_memberships"
	opUserMemberships     = "list_user_memberships"

	// The operations of sessions.Store.
	opEndSessions        = "end_sessions"
	opEndedSessions      = "ended_sessions"
	opPruneEndedSessions = "prune_ended_sessions"
)

// newStoreTelemetry returns the telemetry of a store whose database is
// system (its db.system.name).
func newStoreTelemetry(mp metric.MeterProvider, tp trace.TracerProvider, system string) *storeTelemetry {
	m := telemetry.Meter(mp)
	return &storeTelemetry{
		tracer:   telemetry.Tracer(tp),
		duration: telemetry.Seconds(m, "usersync.store.operation.duration", "Duration of store operations, retries included, by operation and outcome (ok, not_found, deleted, invalid, canceled, error, panic)."),
		retries:  telemetry.Counter(m, "usersync.store.retries", "Statements run again because the database asked (a deadlock, a serialization or Galera certification failure).", "{statement}"),
		attrs: telemetry.Cache[opOutcome]{
			Max:      256, // 30 operations, 7 outcomes
			Overflow: opOutcome{"other", "other"},
			New: func(k opOutcome) telemetry.Attrs {
				return telemetry.NewAttrs(attribute.String("operation", k.op), attribute.String("outcome", k.outcome), attribute.String("db.system.name", system))
			},
		},
		retried: telemetry.NewAttrs(attribute.String("db.system.name", system)),
		system:  attribute.String("db.system.name", system),
	}
}

// spanNames are the span names of the operations: "usersync.store.get".
var spanNames = map[string]string{}

func init() {
	for _, op := range []string{opGet, opGetByExternalID, opGetByTokenIdentifier, opGetMany, opList, opCount, opUpsert, opDelete, opUpsertBatch,
		opChanges, opPruneChanges, opLeaseCursors, opAcquireLease, opRenewLease, opReleaseLease, opMigrate,
		opUpsertOrganization, opUpsertOrganizations, opDeleteOrganization, opUpsertMembership, opUpsertMemberships, opDeleteMembership,
		opOrganization, opOrganizations, opMember, opMemberships, opUserMemberships,
		opEndSessions, opEndedSessions, opPruneEndedSessions} {
		spanNames[op] = "usersync.store." + op
	}
}

// clientSpan makes a span of the client kind (a call to the database),
// made once: an option built per call would allocate.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// operation is one store operation under way.
type operation struct {
	t     *storeTelemetry
	name  string
	span  trace.Span
	start time.Time
}

// start starts the clock of an operation and, when the caller's context
// holds a span, a span of its own below it. An operation without a parent
// gets no span: a change-feed consumer or a lease polls the store every
// few milliseconds, and a root span per poll would flood the traces.
func (t *storeTelemetry) start(ctx context.Context, name string) (context.Context, operation) {
	o := operation{t: t, name: name, start: time.Now()}
	if trace.SpanContextFromContext(ctx).IsValid() {
		span := spanNames[name]
		if span == "" {
			span = "usersync.store"
		}
		ctx, o.span = t.tracer.Start(ctx, span, clientSpan...)
	}
	return ctx, o
}

// errPanic is the outcome of an operation that panicked.
var errPanic = errors.New("panic")

// finish ends the operation with *err, or as "panic" (and panics on) if
// it panicked: deferred, so that no path leaves its span open.
func (o operation) finish(ctx context.Context, err *error) {
	if p := recover(); p != nil {
		o.end(ctx, errPanic)
		panic(p)
	}
	o.end(ctx, *err)
}

// end records the operation's duration and outcome and ends its span.
func (o operation) end(ctx context.Context, err error) {
	outcome := outcomeOf(err)
	o.t.duration.Record(ctx, time.Since(o.start).Seconds(), o.t.attrs.Get(opOutcome{o.name, outcome}).Record...)
	if o.span == nil {
		return
	}
	if o.span.IsRecording() {
		o.span.SetAttributes(o.t.system, attribute.String("usersync.store.operation", o.name), attribute.String("usersync.store.outcome", outcome))
		if outcome == "error" || outcome == "panic" {
			o.span.SetStatus(codes.Error, "the store failed") // the error may quote data
		}
	}
	o.span.End()
}

// retry counts a statement run again, on the metric and the span.
func (t *storeTelemetry) retry(ctx context.Context) {
	t.retries.Add(ctx, 1, t.retried.Add...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("retry")
	}
}

// outcomeOf returns the outcome label of an operation's error.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, usersync.ErrNotFound):
		return "not_found"
	case errors.Is(err, usersync.ErrDeleted):
		return "deleted"
	case errors.Is(err, usersync.ErrInvalid):
		return "invalid"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	case err == errPanic:
		return "panic"
	}
	return "error"
}
