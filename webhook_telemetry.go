package usersync

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync/internal/telemetry"
)

// webhookTelemetry is what a webhook handler reports: a nil one reports
// nothing.
type webhookTelemetry struct {
	tracer     trace.Tracer
	deliveries metric.Int64Counter // by event type and outcome
	attrs      telemetry.Cache[delivery]

	mu    sync.RWMutex
	types map[string]bool // the event types seen, up to maxEventTypes
}

type delivery struct{ eventType, outcome string }

// maxEventTypes bounds the event types that become label values; the
// types after that are counted as "other". Every provider has far fewer.
const maxEventTypes = 64

func newWebhookTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) *webhookTelemetry {
	m := telemetry.Meter(mp)
	return &webhookTelemetry{
		tracer:     telemetry.Tracer(tp),
		deliveries: telemetry.Counter(m, "usersync.webhook.deliveries", "Webhook deliveries, by event type and outcome (created, updated, deleted, stale, duplicate, ignored, handled, user_deleted, deleted_entity, bad_signature, bad_request, invalid_user_data, invalid_data, body_too_large, unreadable_body, method_not_allowed, store_failed, handler_failed, panic).", "{delivery}"),
		attrs: telemetry.Cache[delivery]{
			Max:      maxEventTypes * 32,
			Overflow: delivery{"other", "other"},
			New: func(d delivery) telemetry.Attrs {
				return telemetry.NewAttrs(attribute.String("type", d.eventType), attribute.String("outcome", strings.ReplaceAll(d.outcome, " ", "_")))
			},
		},
		types: map[string]bool{},
	}
}

// eventType returns the label value of an event type: the type itself if
// it looks like one ("user.updated") and is one of the first
// maxEventTypes seen, "unknown" before a delivery is decoded, else
// "other". A signed type is the provider's, but a label must stay bounded
// whatever it sends.
func (t *webhookTelemetry) eventType(s string) string {
	if s == "" {
		return "unknown"
	}
	t.mu.RLock()
	known := t.types[s]
	t.mu.RUnlock()
	if known {
		return s
	}
	if len(s) > 64 || strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return "other"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.types) >= maxEventTypes && !t.types[s] {
		return "other"
	}
	t.types[s] = true
	return s
}

// start starts the span of a delivery, below the request's span (an
// app's HTTP instrumentation makes one); a request outside any trace gets
// none, and costs nothing more.
func (t *webhookTelemetry) start(ctx context.Context) (context.Context, trace.Span) {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	return t.tracer.Start(ctx, "usersync.webhook") // internal, the default kind: no option to allocate
}

// finish counts the delivery d answered, or one that panicked (as
// outcome "panic", status 500: net/http answers it so), and ends its span.
// Deferred, so that no path leaves the span open; a panic goes on.
func (t *webhookTelemetry) finish(d *response) {
	if t == nil {
		return
	}
	if p := recover(); p != nil {
		t.delivered(d.ctx, d.span, d.eventType, "panic", http.StatusInternalServerError)
		panic(p)
	}
	t.delivered(d.ctx, d.span, d.eventType, d.outcome, d.status)
}

// delivered counts a delivery and ends its span.
func (t *webhookTelemetry) delivered(ctx context.Context, span trace.Span, eventType, outcome string, status int) {
	if t == nil {
		return
	}
	eventType = t.eventType(eventType)
	t.deliveries.Add(ctx, 1, t.attrs.Get(delivery{eventType, outcome}).Add...)
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("usersync.webhook.type", eventType),
			attribute.String("usersync.webhook.outcome", strings.ReplaceAll(outcome, " ", "_")),
			attribute.Int("http.response.status_code", status),
		)
		if status >= 500 {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}
