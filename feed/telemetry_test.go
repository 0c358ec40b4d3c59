package feed_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/memstore"
)

// TestFeedTelemetry: deliveries by consumer and result, parked changes,
// the lag back at 0 once a consumer caught up, and a span per delivery
// that the handler's context carries.
func TestFeedTelemetry(t *testing.T) {
	rec := telemetrytest.New(t)
	s := memstore.New()
	n := write(t, s, 5, 1)
	r := newRunner(t, feed.Config{Store: s, MaxAttempts: 2, RetryDelay: time.Millisecond, MeterProvider: rec.MeterProvider, TracerProvider: rec.TracerProvider})
	var done, poisoned, untraced atomic.Int64
	r.Handle("effects", func(ctx context.Context, c usersync.Change) error {
		if !trace.SpanFromContext(ctx).SpanContext().IsValid() {
			untraced.Add(1)
		}
		done.Add(1)
		return nil
	})
	gate := make(chan struct{})
	r.Handle("poison", func(ctx context.Context, c usersync.Change) error {
		select { // the first change waits, so that its age shows
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		poisoned.Add(1)
		return errors.New("cannot")
	})
	stop := start(r)
	waitFor(t, "the stuck consumer's lag to grow", func() bool {
		lag, ok := rec.Gauge(t, "usersync.feed.lag", attribute.String("consumer", "poison"))
		return ok && lag > 0.05
	})
	close(gate)
	waitFor(t, "every change handled and parked", func() bool {
		return done.Load() == int64(n) && poisoned.Load() == int64(2*n) &&
			rec.Sum(t, "usersync.feed.deliveries", attribute.String("consumer", "poison"), attribute.String("result", "parked")) == int64(n)
	})
	waitFor(t, "the lag back at 0", func() bool {
		lag, ok := rec.Gauge(t, "usersync.feed.lag", attribute.String("consumer", "effects"))
		return ok && lag == 0
	})
	stop()
	if lag, ok := rec.Gauge(t, "usersync.feed.lag", attribute.String("consumer", "effects")); ok {
		t.Errorf("a stopped runner still reports a lag of %v s", lag)
	}
	for _, c := range []struct {
		consumer, result string
		want             int64
	}{{"effects", "ok", int64(n)}, {"effects", "failed", 0}, {"poison", "failed", int64(2 * n)}, {"poison", "ok", 0}} {
		if got := rec.Sum(t, "usersync.feed.deliveries", attribute.String("consumer", c.consumer), attribute.String("result", c.result)); got != c.want {
			t.Errorf("usersync.feed.deliveries{consumer=%q,result=%q} = %d, want %d", c.consumer, c.result, got, c.want)
		}
	}
	if untraced.Load() > 0 {
		t.Errorf("%d deliveries without a span in the handler's context", untraced.Load())
	}
	if got := len(rec.Spans("usersync.feed.deliver")); got != 3*n {
		t.Errorf("%d usersync.feed.deliver spans, want %d", got, 3*n)
	}
}
