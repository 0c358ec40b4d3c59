package reconcile_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/reconcile"
)

// TestReconcileTelemetry: runs by result, users by outcome, a span per run
// with one per page below it.
func TestReconcileTelemetry(t *testing.T) {
	rec := telemetrytest.New(t)
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 250, 1)...)
	cfg := reconcile.Config{PageSize: 100, MeterProvider: rec.MeterProvider, TracerProvider: rec.TracerProvider}
	if _, err := e.run(cfg); err != nil {
		t.Fatal(err)
	}
	e.api.Remove("user_00001", "user_00002")
	e.api.Put(apiUsers(3, 4, 2)...)
	if _, err := e.run(cfg); err != nil {
		t.Fatal(err)
	}
	e.api.Remove(func() (ids []string) {
		for _, u := range apiUsers(10, 100, 1) {
			ids = append(ids, u.ID)
		}
		return ids
	}()...)
	if _, err := e.run(cfg); !errors.Is(err, reconcile.ErrMassDelete) {
		t.Fatalf("a mass delete: %v", err)
	}
	// Another run holds the lease.
	r := e.reconciler(cfg)
	if _, ok, err := e.store.AcquireLease(context.Background(), "usersync:reconcile:"+issuer, "someone else", 1<<40); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := r.Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
		t.Fatalf("a run beside another: %v", err)
	}

	on := attribute.String("issuer", issuer)
	for result, want := range map[string]int64{"complete": 2, "refused": 1, "skipped": 1, "failed": 0} {
		if got := rec.Sum(t, "usersync.reconcile.runs", on, attribute.String("result", result)); got != want {
			t.Errorf("usersync.reconcile.runs{result=%q} = %d, want %d", result, got, want)
		}
	}
	// 250 created; then 247 unchanged, 1 updated, 2 deleted; then nothing
	// (the guard refused 90 deletions before any write).
	for outcome, want := range map[string]int64{"created": 250, "updated": 1, "unchanged": 247, "deleted": 2} {
		if got := rec.Sum(t, "usersync.reconcile.users", on, attribute.String("outcome", outcome)); got != want {
			t.Errorf("usersync.reconcile.users{outcome=%q} = %d, want %d", outcome, got, want)
		}
	}
	runs, pages := rec.Spans("usersync.reconcile"), rec.Spans("usersync.reconcile.page")
	if len(runs) != 4 || len(pages) != 3+3 {
		t.Fatalf("%d run spans and %d page spans, want 4 and 6", len(runs), len(pages))
	}
	if pages[0].Parent().SpanID() != runs[0].SpanContext().SpanID() {
		t.Error("a page's span is not a child of its run's")
	}
}
