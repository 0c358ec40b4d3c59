package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/sqlstore"
)

// TestStoreTelemetry: every operation is measured by operation and
// outcome, and has a span, a child of the caller's, named after it.
func TestStoreTelemetry(t *testing.T) {
	system := map[sqlstore.Dialect]string{sqlstore.SQLite: "sqlite", sqlstore.Postgres: "postgresql", sqlstore.MySQL: "mysql"}
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			rec := telemetrytest.New(t)
			db, table := b.Open(t)
			s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table, MeterProvider: rec.MeterProvider, TracerProvider: rec.TracerProvider})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const duration = "usersync.store.operation.duration"
			ctx, parent := rec.TracerProvider.Tracer("test").Start(context.Background(), "request")
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			w := usersync.Write{ID: "id-1", Issuer: "https://issuer.test", Subject: "s1", TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", "s1"),
				Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Ada"}, At: time.Now()}
			if _, _, err := s.Upsert(ctx, w); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, "id-1"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, "id-2"); !errors.Is(err, usersync.ErrNotFound) {
				t.Fatal(err)
			}
			w.Version, w.ID = 0, ""
			if _, _, err := s.Upsert(ctx, w); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("an upsert without a version: %v", err)
			}
			parent.End()
			// Without a span in its context (a poll of the feed, a lease),
			// an operation is measured but starts no root span.
			if _, err := s.Count(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(rec.Spans("usersync.store.count")); n != 0 {
				t.Errorf("%d spans of an operation without a parent, want 0", n)
			}
			if n := rec.Count(t, duration, attribute.String("operation", "count")); n != 1 {
				t.Errorf("count measured %d times, want 1", n)
			}

			for _, c := range []struct{ op, outcome string }{{"migrate", "ok"}, {"upsert", "ok"}, {"get", "ok"}, {"get", "not_found"}, {"upsert", "invalid"}} {
				if got := rec.Count(t, duration, attribute.String("operation", c.op), attribute.String("outcome", c.outcome), attribute.String("db.system.name", system[b.Dialect])); got != 1 {
					t.Errorf("%s{operation=%q,outcome=%q} counts %d, want 1", duration, c.op, c.outcome, got)
				}
			}
			spans := rec.Spans("usersync.store.upsert")
			if len(spans) != 2 {
				t.Fatalf("%d upsert spans, want 2", len(spans))
			}
			if spans[0].Parent().SpanID() != parent.SpanContext().SpanID() {
				t.Error("the upsert's span is not a child of the caller's")
			}
			if v, _ := telemetrytest.Attr(spans[1], "usersync.store.outcome"); v.AsString() != "invalid" {
				t.Errorf("second upsert's outcome %q", v.AsString())
			}
		})
	}
}
