package usersync_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/usersynctest"
)

// TestVerifierTelemetry: verifications by result, cache hits and misses,
// JWKS fetches by issuer, and a span per verification the cache did not
// answer, a child of the caller's.
func TestVerifierTelemetry(t *testing.T) {
	rec := telemetrytest.New(t)
	iss := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *usersync.VerifierConfig) {
		c.MeterProvider, c.TracerProvider = rec.MeterProvider, rec.TracerProvider
	}, iss)
	ctx, parent := rec.TracerProvider.Tracer("test").Start(context.Background(), "request")
	good := iss.Token(map[string]any{"sub": "user_1"})
	for range 3 {
		if _, err := v.Verify(ctx, good); err != nil {
			t.Fatal(err)
		}
	}
	expired := iss.Token(map[string]any{"sub": "user_1", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	stranger := usersynctest.NewIssuer(t).Token(map[string]any{"sub": "user_2"})
	for _, tok := range []string{expired, stranger, "", "not.a.token"} {
		if _, err := v.Verify(ctx, tok); err == nil {
			t.Fatal("a bad token verified")
		}
	}
	parent.End()

	const verifications = "usersync.token.verifications"
	for result, want := range map[string]int64{"ok": 1, "cached": 2, "expired": 1, "unknown_issuer": 1, "no_token": 1, "malformed": 1} {
		if got := rec.Sum(t, verifications, attribute.String("result", result)); got != want {
			t.Errorf("%s{result=%q} = %d, want %d", verifications, result, got, want)
		}
	}
	if got := rec.Sum(t, verifications); got != 7 {
		t.Errorf("%s = %d in all, want 7", verifications, got)
	}
	// The empty token is never looked up; the other five miss but one.
	if miss := rec.Sum(t, "usersync.token.cache.misses"); miss != 4 {
		t.Errorf("%d cache misses, want 4", miss)
	}
	if got := rec.Sum(t, "usersync.jwks.fetches", attribute.String("issuer", iss.URL), attribute.String("result", "ok")); got < 1 {
		t.Errorf("usersync.jwks.fetches{issuer, ok} = %d, want at least 1", got)
	}
	spans := rec.Spans("usersync.Verify")
	if len(spans) != 5 {
		t.Fatalf("%d usersync.Verify spans, want 5 (one per verification the cache did not answer)", len(spans))
	}
	results := map[string]int{}
	for _, s := range spans {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of the request's", s.Name())
		}
		r, _ := telemetrytest.Attr(s, "usersync.token.result")
		results[r.AsString()]++
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), "user_") {
				t.Errorf("span attribute %s carries a subject", kv.Key)
			}
		}
	}
	if results["ok"] != 1 || results["expired"] != 1 {
		t.Errorf("span results %v", results)
	}
	// Outside any trace: counted, but no root span.
	if _, err := v.Verify(context.Background(), expired); err == nil {
		t.Fatal("an expired token verified")
	}
	if n := len(rec.Spans("usersync.Verify")); n != 5 {
		t.Errorf("%d spans after a verification without a parent span, want still 5", n)
	}
	if got := rec.Sum(t, verifications, attribute.String("result", "expired")); got != 2 {
		t.Errorf("expired verifications %d, want 2", got)
	}
}

// TestWebhookTelemetry: deliveries by event type and outcome, a span per
// delivery under the request's, and the trace ID in the delivery's log
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
