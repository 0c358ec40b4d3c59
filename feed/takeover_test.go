package feed_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
)

// refusals is a store that counts the acquisitions of a consumer's lease
// that it refused to holder.
type refusals struct {
	store
	holder string
	n      atomic.Int32
}

func (r *refusals) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	cursor, ok, err := r.store.AcquireLease(ctx, name, holder, ttl)
	if err == nil && !ok && holder == r.holder {
		r.n.Add(1)
	}
	return cursor, ok, err
}

const (
	previousProcess = "INFO lease: took over a lease that another process held under this holder"
	anotherReplica  = "INFO feed: took over the consumer from another replica"
)

// TestTakeoversAreLogged: a consumer that takes over from this replica's
// previous process, or from another replica, says so at Info, once.
func TestTakeoversAreLogged(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name+"/from this replica's previous process", func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			n := write(t, s, 10, 1)
			// The previous process of replica-0 was killed at change 3,
			// with a minute left on its lease.
			if _, ok, err := s.AcquireLease(ctx, "usersync:feed:effects", "replica-0", time.Minute); err != nil || !ok {
				t.Fatal(ok, err)
			}
			if ok, err := s.RenewLease(ctx, "usersync:feed:effects", "replica-0", time.Minute, 3); err != nil || !ok {
				t.Fatal(ok, err)
			}
			logs, log := telemetrytest.NewLogs()
			l := newLedger()
			r := newRunner(t, feed.Config{Store: s, Holder: "replica-0", LeaseTTL: time.Minute, Logger: log})
			r.Handle("effects", l.handle)
			stop := start(r)
			defer stop()
			// Within the lease's minute: it did not wait for it to expire.
			waitFor(t, "the restarted replica", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.deliveries) == n-3 })
			if logs.Count(previousProcess) != 1 || logs.Count(anotherReplica) != 0 {
				t.Fatalf("logged:\n%s", logs)
			}
			if line := logs.With(previousProcess)[0]; !strings.Contains(line, "consumer=effects") || !strings.Contains(line, "holder=replica-0") || !strings.Contains(line, "cursor=3") {
				t.Fatalf("the takeover's line lacks the consumer, the holder or the position:\n%s", line)
			}
		})

		t.Run(name+"/from another replica", func(t *testing.T) {
			t.Parallel() // mostly waiting for a lease to expire
			s := newStore(t)
			n := write(t, s, 30, 2)
			l := newLedger()
			slow := func(ctx context.Context, c usersync.Change) error {
				time.Sleep(200 * time.Microsecond)
				return l.handle(ctx, c)
			}
			ttl := 2 * time.Second
			dying := &mortal{store: s}
			a := newRunner(t, feed.Config{Store: dying, Holder: "replica-a", LeaseTTL: ttl, BatchSize: 10})
			waiting := &refusals{store: s, holder: "replica-b"}
			logs, log := telemetrytest.NewLogs()
			b := newRunner(t, feed.Config{Store: waiting, Holder: "replica-b", LeaseTTL: ttl, BatchSize: 10, Logger: log})
			a.Handle("effects", slow)
			b.Handle("effects", slow)
			stopA := start(a)
			waitFor(t, "replica a to start", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.deliveries) > 0 })
			stopB := start(b)
			defer stopB()
			waitFor(t, "replica b to find a's lease", func() bool { return waiting.n.Load() > 0 })
			dying.dead.Store(true) // dies: no last save, its lease is left to expire
			stopA()
			// a may have delivered everything already: b takes over the
			// lease all the same, once it expires, and says so.
			waitFor(t, "replica b to take over", func() bool { return logs.Count(anotherReplica) > 0 })
			waitFor(t, "replica b to finish", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.deliveries) == n })
			if logs.Count(anotherReplica) != 1 || logs.Count(previousProcess) != 0 {
				t.Fatalf("logged:\n%s", logs)
			}
			if l.overlap.Load() {
				t.Fatal("the two replicas ran the consumer at the same time")
			}
		})
	}
}

// TestOneHolderTwiceInAProcess: two Runners of one holder in a process
// (a mistake: a holder names a process) never run a consumer at once: the
// second stands by as another replica would, and takes over when the first
// stops.
func TestOneHolderTwiceInAProcess(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			n := write(t, s, 30, 2)
			l := newLedger()
			gate, entered := make(chan struct{}), make(chan struct{}, 1)
			handler := func(ctx context.Context, c usersync.Change) error {
				select {
				case entered <- struct{}{}:
				default:
				}
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
				time.Sleep(200 * time.Microsecond)
				return l.handle(ctx, c)
			}
			first := newRunner(t, feed.Config{Store: s, Holder: "replica-0", BatchSize: 5})
			first.Handle("effects", handler)
			stopFirst := start(first)
			<-entered // the first holds the lease
			logs, log := telemetrytest.NewLogs()
			second := newRunner(t, feed.Config{Store: s, Holder: "replica-0", BatchSize: 5, Logger: log})
			second.Handle("effects", handler)
			stopSecond := start(second)
			defer stopSecond()
			waitFor(t, "the second Runner to stand by", func() bool {
				return logs.Count("DEBUG feed: another replica runs the consumer") == 1
			})
			close(gate)
			waitFor(t, "half the changes", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.deliveries) >= n/2 })
			stopFirst()
			waitFor(t, "every change", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.deliveries) == n })
			if l.overlap.Load() {
				t.Fatal("two Runners of one holder ran the consumer at the same time")
			}
			l.check(t, s)
			if logs.Count(anotherReplica) != 1 {
				t.Fatalf("the second Runner did not log its takeover:\n%s", logs)
			}
		})
	}
}
