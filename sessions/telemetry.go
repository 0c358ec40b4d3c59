package sessions

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/usersync/usersync/internal/telemetry"
)

// setTelemetry is what a Set reports: a nil one reports nothing.
type setTelemetry struct {
	reads     metric.Int64Counter
	ok, error telemetry.Attrs
}

// newSetTelemetry registers the Set's metrics with mp: its reads of the
// store by result, and, observed when collected, how many endings it holds
// and the age of what it read.
func newSetTelemetry(mp metric.MeterProvider, s *Set) *setTelemetry {
	m := telemetry.Meter(mp)
	t := &setTelemetry{
		reads: telemetry.Counter(m, "usersync.sessions.reads", "Reads of the ended sessions from the store, by result: ok or error.", "{read}"),
		ok:    telemetry.NewAttrs(attribute.String("result", "ok")),
		error: telemetry.NewAttrs(attribute.String("result", "error")),
	}
	held := telemetry.ObservableGauge(m, "usersync.sessions.held", "Ended sessions (and users all of whose sessions ended) the replica holds in memory and refuses.", "{session}")
	telemetry.Observe(m, held, func() (float64, bool) { return float64(s.Len()), true })
	age := telemetry.ObservableGauge(m, "usersync.sessions.age", "Time since the start of the replica's last successful read of the ended sessions: past MaxStale, it refuses every identity.", "s")
	telemetry.Observe(m, age, func() (float64, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.freshUntil.IsZero() {
			return 0, false
		}
		return time.Since(s.freshUntil.Add(-s.cfg.MaxStale)).Seconds(), true // freshUntil is on the monotonic clock
	})
	return t
}

// read counts a read of the store.
func (t *setTelemetry) read(err error) {
	a := t.ok
	if err != nil {
		a = t.error
	}
	t.reads.Add(context.Background(), 1, a.Add...)
}
