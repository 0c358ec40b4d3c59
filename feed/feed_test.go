package feed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/memstore"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const issuer = "https://issuer.test"

// store is a store of users with a feed: what the tests write to and
// deliver from.
type store interface {
	usersync.Store
	feed.Store
}

// stores are the stores every feed test runs on: memstore, and sqlstore on
// each SQL backend whose DSN is set.
func stores(t *testing.T) map[string]func(t *testing.T) store {
	m := map[string]func(t *testing.T) store{"memstore": func(*testing.T) store { return memstore.New() }}
	for _, b := range testdb.Backends {
		m[b.Name] = func(t *testing.T) store { return b.NewStore(t) }
	}
	return m
}

// write applies n writes to users u0..u(users-1) through a syncer, round
// robin, deleting every seventh user at the end; it returns the number of
// changes they made.
func write(t *testing.T, s store, users, rounds int) int {
	return writeAs(t, s, "u", users, rounds)
}

// writeAs is write with users named prefix0, prefix1, ...
func writeAs(t *testing.T, s store, prefix string, users, rounds int) int {
	t.Helper()
	syncer, err := usersync.New(usersync.Config{Store: s, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := 0
	for r := range rounds {
		for u := range users {
			w := usersync.Write{Issuer: issuer, Subject: fmt.Sprintf("%s%d", prefix, u), Version: usersync.Version(1_700_000_000_000 + r), Fields: usersync.FieldName, Profile: usersync.Profile{Name: fmt.Sprint(r)}}
			if _, o, err := syncer.Upsert(ctx, w); err != nil {
				t.Fatal(err)
			} else if o != usersync.Stale {
				n++
			}
		}
	}
	for u := 0; u < users; u += 7 {
		if _, o, err := syncer.Delete(ctx, issuer, fmt.Sprintf("%s%d", prefix, u)); err != nil || o != usersync.Deleted {
			t.Fatalf("delete: %v, %v", o, err)
		}
		n++
	}
	return n
}

// ledger records what a consumer's handler did: the Seqs it applied, per
// user, idempotently (a redelivered Seq is not applied twice), and how
// many times each Seq was delivered.
type ledger struct {
	mu         sync.Mutex
	applied    map[string][]int64
	deliveries map[int64]int
	inFlight   atomic.Int32
	overlap    atomic.Bool
}

func newLedger() *ledger {
	return &ledger{applied: map[string][]int64{}, deliveries: map[int64]int{}}
}

func (l *ledger) handle(_ context.Context, c usersync.Change) error {
	if l.inFlight.Add(1) > 1 {
		l.overlap.Store(true)
	}
	defer l.inFlight.Add(-1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deliveries[c.Seq]++
	seqs := l.applied[c.UserID]
	if len(seqs) > 0 && seqs[len(seqs)-1] >= c.Seq {
		return nil // already applied: the idempotent handler does nothing
	}
	l.applied[c.UserID] = append(seqs, c.Seq)
	return nil
}

// check compares the ledger with exactly-once application of the whole
// feed: every change applied once, each user's in feed order.
func (l *ledger) check(t *testing.T, s store) {
	t.Helper()
	all, err := s.Changes(context.Background(), 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int64{}
	for _, c := range all {
		want[c.UserID] = append(want[c.UserID], c.Seq)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.applied) != len(want) {
		t.Fatalf("applied changes of %d users, want %d", len(l.applied), len(want))
	}
	for u, seqs := range want {
		if !slices.Equal(l.applied[u], seqs) {
			t.Fatalf("user %s: applied %v, want %v", u, l.applied[u], seqs)
		}
	}
	for _, c := range all {
		if l.deliveries[c.Seq] < 1 {
			t.Fatalf("change %d never delivered", c.Seq)
		}
	}
}

// waitFor polls cond for up to 30 seconds: the deadline of a condition
// that holds in milliseconds, or in a lease's ttl, on an idle machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newRunner(t *testing.T, cfg feed.Config) *feed.Runner {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	r, err := feed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// start runs r until the returned stop is called; stop waits for it.
func start(r *feed.Runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	return func() { cancel(); <-done }
}

func TestEveryConsumerGetsEveryChangeInOrder(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			n := write(t, s, 20, 3)
			a, b := newLedger(), newLedger()
			r := newRunner(t, feed.Config{Store: s, BatchSize: 7})
			if err := r.Handle("a", a.handle); err != nil {
				t.Fatal(err)
			}
			if err := r.Handle("b", b.handle); err != nil {
				t.Fatal(err)
			}
			stop := start(r)
			waitFor(t, "both consumers", func() bool {
				a.mu.Lock()
				defer a.mu.Unlock()
				b.mu.Lock()
				defer b.mu.Unlock()
				return len(a.deliveries) == n && len(b.deliveries) == n
			})
			// Changes made while the consumers run reach them too.
			more := writeAs(t, s, "later", 3, 10)
			waitFor(t, "the later changes", func() bool {
				a.mu.Lock()
				defer a.mu.Unlock()
				b.mu.Lock()
				defer b.mu.Unlock()
				return len(a.deliveries) == n+more && len(b.deliveries) == n+more
			})
			stop()
			a.check(t, s)
			b.check(t, s)
			all, _ := s.Changes(context.Background(), 0, 1_000_000)
			pos, err := s.LeaseCursors(context.Background(), "usersync:feed:")
			last := all[len(all)-1].Seq
			if err != nil || len(pos) != 2 || pos["usersync:feed:a"] != last || pos["usersync:feed:b"] != last {
				t.Fatalf("saved positions %v, %v; want both %d", pos, err, last)
			}
		})
	}
}

// TestAtLeastOnceThroughCrashes kills the runner in the middle of a
// batch, after a random (seeded, logged) number of deliveries: nothing more
// reaches the store (no last save of its position,
// no release of its lease), and a new runner starts, as a new process,
// each time. Every change is delivered at least once, the ones delivered
// before a kill again, and the handler's effects equal exactly-once
// application of the feed.
func TestAtLeastOnceThroughCrashes(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))
			s := newStore(t)
			n := write(t, s, 40, 5)
			l := newLedger()
			const batch = 25
			crashes := 0
			for {
				l.mu.Lock()
				done := len(l.deliveries) == n
				l.mu.Unlock()
				if done {
					break
				}
				process := &mortal{store: s}
				// Killed after k deliveries: one or two whole batches (saved:
				// progress), then part of the next (not saved: delivered
				// again by the next process).
				k := batch*(1+rng.IntN(2)) + 1 + rng.IntN(batch-1)
				var delivered atomic.Int64
				ended := make(chan struct{}) // killed, or every change delivered
				var end sync.Once
				r := newRunner(t, feed.Config{Store: process, BatchSize: batch, Holder: fmt.Sprint("process-", crashes), LeaseTTL: 150 * time.Millisecond})
				r.Handle("effects", func(ctx context.Context, c usersync.Change) error {
					if err := l.handle(ctx, c); err != nil {
						return err
					}
					l.mu.Lock()
					all := len(l.deliveries) == n
					l.mu.Unlock()
					if delivered.Add(1) == int64(k) {
						process.dead.Store(true) // killed: the batch in hand is not saved
						end.Do(func() { close(ended) })
					}
					if all {
						end.Do(func() { close(ended) })
					}
					return nil
				})
				stop := start(r)
				<-ended
				stop()
				if process.dead.Load() {
					crashes++
				}
				if crashes > 500 {
					t.Fatal("no progress")
				}
			}
			l.check(t, s)
			again := 0
			for _, d := range l.deliveries {
				if d > 1 {
					again++
				}
			}
			t.Logf("%d changes, %d runs, %d changes delivered more than once", n, crashes, again)
			if crashes < 3 || again == 0 {
				t.Fatalf("%d runs, %d redeliveries: the test crashed nothing mid-batch", crashes, again)
			}
		})
	}
}

func TestFailingHandlerIsRetriedThenParked(t *testing.T) {
	s := memstore.New()
	n := write(t, s, 5, 2)
	all, _ := s.Changes(context.Background(), 0, 100)
	poison, flaky := all[2], all[4]
	var mu sync.Mutex
	calls := map[int64]int{}
	var order []int64
	handler := func(_ context.Context, c usersync.Change) error {
		mu.Lock()
		defer mu.Unlock()
		calls[c.Seq]++
		switch {
		case c.Seq == poison.Seq:
			return errors.New("poison")
		case c.Seq == flaky.Seq && calls[c.Seq] <= 2:
			panic("flaky") // a panic is a failure too
		}
		order = append(order, c.Seq)
		return nil
	}
	var parked []string
	var logs strings.Builder
	r := newRunner(t, feed.Config{Store: s, MaxAttempts: 3, RetryDelay: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		OnParked: func(_ context.Context, consumer string, c usersync.Change, err error) error {
			mu.Lock()
			defer mu.Unlock()
			parked = append(parked, fmt.Sprintf("%s %d %v", consumer, c.Seq, err))
			if len(parked) == 1 {
				return errors.New("the parking table is down") // not kept: delivered again
			}
			return nil
		}})
	r.Handle("effects", handler)
	stop := start(r)
	waitFor(t, "every change", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == n-1
	})
	stop()
	// 3 attempts, parking fails, 1 more, parked.
	if calls[poison.Seq] != 4 || calls[flaky.Seq] != 3 {
		t.Fatalf("poison called %d times, flaky %d; want 4 and 3", calls[poison.Seq], calls[flaky.Seq])
	}
	if want := fmt.Sprintf("effects %d poison", poison.Seq); len(parked) != 2 || parked[1] != want {
		t.Fatalf("parked %q, want the second to be %q", parked, want)
	}
	if !slices.IsSorted(order) {
		t.Fatalf("delivered out of feed order: %v", order)
	}
	if !strings.Contains(logs.String(), "parked") || !strings.Contains(logs.String(), "flaky") {
		t.Fatalf("the parking and the panic are not logged:\n%s", logs.String())
	}
}

// TestOneReplicaAtATimeAndTakeover runs two replicas: each consumer runs in
// one of them at a time; when that one dies without letting its lease go,
// the other takes over from the last saved position.
func TestOneReplicaAtATimeAndTakeover(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel() // mostly waiting for a lease to expire
			s := newStore(t)
			n := write(t, s, 30, 4)
			l := newLedger()
			slow := func(ctx context.Context, c usersync.Change) error {
				time.Sleep(200 * time.Microsecond)
				return l.handle(ctx, c)
			}
			// Two replicas at once would be a failure: the ttl leaves a
			// renewal, every third of it, time to land on a slow machine.
			ttl := 2 * time.Second
			dying := &mortal{store: s}
			a := newRunner(t, feed.Config{Store: dying, Holder: "replica-a", LeaseTTL: ttl, BatchSize: 10})
			waiting := &refusals{store: s, holder: "replica-b"}
			b := newRunner(t, feed.Config{Store: waiting, Holder: "replica-b", LeaseTTL: ttl, BatchSize: 10})
			// Replica a handles 15 changes (a batch saved, half of the
			// next not), then holds the 16th until it dies: b has the rest
			// to do.
			const beforeDeath = 15
			var byA, byB atomic.Int32
			var aHolds, overlap atomic.Bool // a is in its handler, holding its lease
			a.Handle("effects", func(ctx context.Context, c usersync.Change) error {
				if byA.Load() == beforeDeath {
					aHolds.Store(true)
					<-ctx.Done()
					aHolds.Store(false)
					return ctx.Err()
				}
				if err := slow(ctx, c); err != nil {
					return err
				}
				byA.Add(1)
				return nil
			})
			b.Handle("effects", func(ctx context.Context, c usersync.Change) error {
				if aHolds.Load() {
					overlap.Store(true) // b delivers while a, alive, holds the lease
				}
				byB.Add(1)
				return slow(ctx, c)
			})
			stopA := start(a)
			waitFor(t, "replica a to handle its changes", func() bool { return byA.Load() == beforeDeath })
			stopB := start(b)
			waitFor(t, "replica b to find a's lease", func() bool { return waiting.n.Load() > 0 })
			dying.dead.Store(true) // dies: no last save, its lease is left to expire
			stopA()
			waitFor(t, "replica b to take over and finish", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.deliveries) == n })
			stopB()
			if l.overlap.Load() || overlap.Load() {
				t.Fatal("the two replicas ran the consumer at the same time")
			}
			if got := byB.Load(); got < int32(n-beforeDeath) {
				t.Fatalf("replica b handled %d changes, want the %d after a's, at least", got, n-beforeDeath)
			}
			l.check(t, s)
		})
	}
}

// mortal is a process's connection to the store: once dead, nothing more
// it does reaches the store.
type mortal struct {
	store
	dead atomic.Bool
}

var errDead = errors.New("the process is dead")

func (m *mortal) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error) {
	if m.dead.Load() {
		return false, errDead
	}
	return m.store.RenewLease(ctx, name, holder, ttl, cursor)
}

func (m *mortal) ReleaseLease(ctx context.Context, name, holder string) error {
	if m.dead.Load() {
		return errDead
	}
	return m.store.ReleaseLease(ctx, name, holder)
}

// prunes is a store that counts the calls of PruneChanges: two a pass of
// pruning.
type prunes struct {
	store
	n atomic.Int64
}

func (p *prunes) PruneChanges(ctx context.Context, through int64, before time.Time) (int, error) {
	defer p.n.Add(1)
	return p.store.PruneChanges(ctx, through, before)
}

// waitForAPass waits until a whole pass of pruning has run that began
// after the call: one that read the consumers' positions as they are now.
func (p *prunes) waitForAPass(t *testing.T) {
	t.Helper()
	// The pass under way makes at most two more calls, the next one two.
	calls := p.n.Load()
	waitFor(t, "a pass of pruning", func() bool { return p.n.Load() >= calls+4 })
}

func TestPruning(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			n := write(t, s, 10, 2)
			fast, slow := newLedger(), newLedger()
			var now atomic.Pointer[time.Time]
			t0 := time.Now()
			now.Store(&t0)
			clock := func() time.Time { return *now.Load() }
			pruning := &prunes{store: s}
			r := newRunner(t, feed.Config{Store: pruning, Retention: time.Hour, MaxAge: 48 * time.Hour, PruneEvery: 10 * time.Millisecond, Now: clock,
				// The slow consumer's position is saved by its renewals,
				// every third of the ttl. A lease lost on a slow machine
				// means changes delivered again, which nothing here counts:
				// a short ttl is safe.
				LeaseTTL: 300 * time.Millisecond})
			r.Handle("fast", fast.handle)
			gate := make(chan struct{})
			r.Handle("slow", func(ctx context.Context, c usersync.Change) error {
				if c.Seq > 5 {
					select {
					case <-gate:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return slow.handle(ctx, c)
			})
			stop := start(r)
			defer stop()
			waitFor(t, "the fast consumer", func() bool { fast.mu.Lock(); defer fast.mu.Unlock(); return len(fast.deliveries) == n })
			count := func() int {
				all, err := s.Changes(context.Background(), 0, 1_000_000)
				if err != nil {
					t.Fatal(err)
				}
				return len(all)
			}
			// An hour later, the changes both consumers passed go; the
			// slow one's are kept.
			later := t0.Add(2 * time.Hour)
			now.Store(&later)
			waitFor(t, "pruning of what both passed", func() bool { return count() <= n-5 })
			pruning.waitForAPass(t) // which must not prune more
			if c := count(); c < n-5 {
				t.Fatalf("%d changes left, want %d: pruned what the slow consumer has not passed", c, n-5)
			}
			// Past MaxAge, everything goes, passed or not.
			muchLater := t0.Add(72 * time.Hour)
			now.Store(&muchLater)
			waitFor(t, "pruning by age", func() bool { return count() <= 1 }) // a store may keep the newest
			close(gate)
		})
	}
}

// TestPruningHonoursEveryConsumer: a consumer another runner registers (a
// worker process, the previous version during a deploy) holds changes back
// from this runner's pruning too.
func TestPruningHonoursEveryConsumer(t *testing.T) {
	s := memstore.New()
	n := write(t, s, 10, 1)
	// The worker's consumer ran once and stopped at Seq 3.
	if _, ok, err := s.AcquireLease(context.Background(), "usersync:feed:worker.index", "worker", time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, err := s.RenewLease(context.Background(), "usersync:feed:worker.index", "worker", time.Millisecond, 3); err != nil || !ok {
		t.Fatal(ok, err)
	}
	web := newLedger()
	later := time.Now().Add(48 * time.Hour) // past Retention, before MaxAge
	pruning := &prunes{store: s}
	r := newRunner(t, feed.Config{Store: pruning, PruneEvery: 5 * time.Millisecond, Now: func() time.Time { return later }})
	r.Handle("web.audit", web.handle)
	all, err := s.Changes(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(r)
	waitFor(t, "the web consumer to pass every change", func() bool {
		pos, err := s.LeaseCursors(context.Background(), "usersync:feed:web.audit")
		return err == nil && pos["usersync:feed:web.audit"] == all[len(all)-1].Seq
	})
	// A pass that found the web consumer past every change, and the
	// worker's at 3: it prunes up to the worker's, and no further.
	pruning.waitForAPass(t)
	stop()
	left, err := s.Changes(context.Background(), 0, 1000)
	if err != nil || len(left) != n-3 || left[0].Seq != 4 {
		t.Fatalf("%d changes left from %v, %v; want the %d after the worker's position", len(left), left, err, n-3)
	}
}

func TestConfigAndHandle(t *testing.T) {
	for _, cfg := range []feed.Config{
		{},
		{Store: memstore.New(), BatchSize: -1},
		{Store: memstore.New(), LeaseTTL: time.Millisecond},
		{Store: memstore.New(), Holder: strings.Repeat("h", 256)},
	} {
		if _, err := feed.New(cfg); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("New(%+v) = %v", cfg, err)
		}
	}
	s := memstore.New()
	r := newRunner(t, feed.Config{Store: s})
	h := func(context.Context, usersync.Change) error { return nil }
	for name, err := range map[string]error{
		"":          r.Handle("", h),
		"nil":       r.Handle("nil", nil),
		"bad name":  r.Handle("a b", h),
		"too long":  r.Handle(strings.Repeat("x", 101), h),
		"duplicate": errors.Join(r.Handle("dup", h), r.Handle("dup", h)),
	} {
		if !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("Handle %s: %v", name, err)
		}
	}
	stop := start(r)
	defer stop()
	// Run has begun once a consumer of it takes its lease.
	waitFor(t, "the consumer dup to run", func() bool {
		pos, err := s.LeaseCursors(context.Background(), "usersync:feed:dup")
		_, ok := pos["usersync:feed:dup"]
		return err == nil && ok
	})
	if err := r.Handle("late", h); !errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), "after Run") {
		t.Fatalf("Handle after Run: %v", err)
	}
}

// usurped is a store in which, once taken, the consumers' leases belong to
// another replica: renewals and acquisitions are refused.
type usurped struct {
	store
	taken atomic.Bool
}

func (u *usurped) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error) {
	if u.taken.Load() {
		return false, nil
	}
	return u.store.RenewLease(ctx, name, holder, ttl, cursor)
}

func (u *usurped) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	if u.taken.Load() {
		return 0, false, nil
	}
	return u.store.AcquireLease(ctx, name, holder, ttl)
}

// A replica that lost its consumer's lease delivers nothing more, even to
// a handler that ignores its context: the rest of the batch in hand is
// the new holder's.
func TestALostLeaseStopsTheBatch(t *testing.T) {
	s := &usurped{store: memstore.New()}
	write(t, s, 10, 1)
	var calls atomic.Int32
	first := make(chan struct{})
	r := newRunner(t, feed.Config{Store: s, BatchSize: 100, LeaseTTL: 300 * time.Millisecond})
	r.Handle("stubborn", func(ctx context.Context, c usersync.Change) error {
		if calls.Add(1) == 1 {
			s.taken.Store(true) // another replica takes the lease over
			select {
			case <-ctx.Done(): // the next renewal found it lost
			case <-time.After(time.Minute):
				t.Error("the lost lease did not end the handler's context in a minute")
			}
			close(first)
		}
		return nil // as a handler that ignores its context does
	})
	stop := start(r)
	<-first
	stop() // waits for the consumer: what it delivered after the loss is counted
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d deliveries; want 1: the replica went on with the batch after its lease was lost", n)
	}
}
