package usersync_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
)

// line.
func TestWebhookTelemetry(t *testing.T) {
	rec := telemetrytest.New(t)
	var logs bytes.Buffer
	p := inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}
	h, err := usersync.NewWebhookHandler(newSyncer(t, nil, nil), p, usersync.WebhookConfig{
		MeterProvider: rec.MeterProvider, TracerProvider: rec.TracerProvider,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	saved := `{"type":"user.saved","id":"42","name":"Ada","updated_at":1700000000000}`
	ctx, parent := rec.TracerProvider.Tracer("test").Start(context.Background(), "POST /webhook")
	for _, r := range []struct{ id, body string }{
		{"d1", saved}, {"d1", saved}, {"d2", saved}, {"d3", `{"type":"team.created"}`},
		{"d4", `{"type":"` + strings.Repeat("x", 100) + `"}`}, // not a user event, and a type too long for a label
	} {
		serve(h, p.sign(r.id, r.body).WithContext(ctx))
	}
	forged := p.sign("d5", saved)
	forged.Header.Set("X-Signature", "00")
	serve(h, forged)
	parent.End()

	const deliveries = "usersync.webhook.deliveries"
	for _, c := range []struct {
		typ, outcome string
		want         int64
	}{
		{"user.saved", "created", 1}, {"unknown", "duplicate", 1}, {"user.saved", "stale", 1},
		{"team.created", "ignored", 1}, {"other", "ignored", 1}, {"unknown", "bad_signature", 1},
	} {
		if got := rec.Sum(t, deliveries, attribute.String("type", c.typ), attribute.String("outcome", c.outcome)); got != c.want {
			t.Errorf("%s{type=%q,outcome=%q} = %d, want %d", deliveries, c.typ, c.outcome, got, c.want)
		}
	}
	spans := rec.Spans("usersync.webhook")
	if len(spans) != 5 {
		t.Fatalf("%d usersync.webhook spans, want 5 (none for the request outside any trace)", len(spans))
	}
	if spans[0].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Error("the delivery's span is not a child of the request's")
	}
	if o, _ := telemetrytest.Attr(spans[0], "usersync.webhook.outcome"); o.AsString() != "created" {
		t.Errorf("first span's outcome %q", o.AsString())
	}
	first, _, _ := strings.Cut(logs.String(), "\n")
	if want := `"trace_id":"` + parent.SpanContext().TraceID().String() + `"`; !strings.Contains(first, want) {
		t.Errorf("log line %s lacks %s", first, want)
	}
}

// TestNoTraceIDWithoutASpan: the log handler adds nothing when no span is
// active.
func TestNoTraceIDWithoutASpan(t *testing.T) {
	var logs bytes.Buffer
	p := inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}
	h, err := usersync.NewWebhookHandler(newSyncer(t, nil, nil), p, usersync.WebhookConfig{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	serve(h, p.sign("d1", `{"type":"user.saved","id":"42","name":"Ada","updated_at":1700000000000}`))
	if strings.Contains(logs.String(), "trace_id") || !strings.Contains(logs.String(), `"outcome":"created"`) {
		t.Errorf("log: %s", logs.String())
	}
}

// TestWebhookTelemetryOnPanic: a delivery whose OnEvent panics is counted
// (outcome panic) and its span ended, and the panic goes on to net/http.
func TestWebhookTelemetryOnPanic(t *testing.T) {
	rec := telemetrytest.New(t)
	p := inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}
	h, err := usersync.NewWebhookHandler(newSyncer(t, nil, nil), p, usersync.WebhookConfig{
		MeterProvider: rec.MeterProvider, TracerProvider: rec.TracerProvider, Logger: quiet,
		OnEvent: func(context.Context, usersync.Event) error { panic("a bug in the app") },
	})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		ctx, parent := rec.TracerProvider.Tracer("test").Start(context.Background(), "POST /webhook")
		defer parent.End()
		serve(h, p.sign("d1", `{"type":"team.created"}`).WithContext(ctx))
	}()
	if got := rec.Sum(t, "usersync.webhook.deliveries", attribute.String("outcome", "panic")); got != 1 {
		t.Errorf("deliveries{outcome=panic} = %d, want 1", got)
	}
	if n := len(rec.Spans("usersync.webhook")); n != 1 {
		t.Errorf("%d ended spans, want 1", n)
	}
}
