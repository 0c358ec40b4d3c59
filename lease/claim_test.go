package lease_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/memstore"
)

// logs records what a logger logged.
type logs struct {
	mu      *sync.Mutex
	records *[]string // level, message and attributes, one line each
	attrs   []slog.Attr
}

func newLogs() (*logs, *slog.Logger) {
	l := &logs{mu: new(sync.Mutex), records: new([]string)}
	return l, slog.New(l)
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	line := fmt.Sprintf("%s %s", r.Level, r.Message)
	add := func(a slog.Attr) bool { line += fmt.Sprintf(" %s=%v", a.Key, a.Value); return true }
	for _, a := range l.attrs {
		add(a)
	}
	r.Attrs(add)
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.records = append(*l.records, line)
	return nil
}

func (l *logs) WithAttrs(as []slog.Attr) slog.Handler {
	return &logs{mu: l.mu, records: l.records, attrs: append(l.attrs[:len(l.attrs):len(l.attrs)], as...)}
}

func (l *logs) WithGroup(string) slog.Handler { return l }

// lines returns the lines that contain every one of want.
func (l *logs) lines(want ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range *l.records {
		for _, w := range want {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// stores are the lease stores the tests run on: memstore, and sqlstore on
// each SQL backend whose DSN is set.
func stores() map[string]func(t *testing.T) lease.Store {
	m := map[string]func(t *testing.T) lease.Store{"memstore": func(*testing.T) lease.Store { return memstore.New() }}
	for _, b := range testdb.Backends {
		m[b.Name] = func(t *testing.T) lease.Store { return b.NewStore(t) }
	}
	return m
}

// TestClaim: a Claim's first Acquire takes over at once a lease that
// another process still holds under its holder (this replica's previous
// one), and logs that; it waits for every other holder's lease as Acquire
// does.
func TestClaim(t *testing.T) {
	const name, holder = "job", "replica-0"
	for _, tc := range []struct {
		name string
		// before is what other processes did: each one a holder that
		// acquires the lease (until ttl from now; ttl < 0: expired) and
		// sets its cursor, and may release it.
		before   []step
		ok       bool  // the Claim takes the lease
		cursor   int64 // with this cursor
		takeover bool  // and logs a takeover
	}{
		{name: "a new lease", ok: true},
		{name: "released by this holder's previous process", before: []step{{holder, time.Minute, 5, true}}, ok: true, cursor: 5},
		{name: "held by this holder's previous process", before: []step{{holder, time.Minute, 5, false}}, ok: true, cursor: 5, takeover: true},
		{name: "held by another holder", before: []step{{"replica-1", time.Minute, 5, false}}},
		{name: "released by another holder", before: []step{{"replica-1", time.Minute, 5, true}}, ok: true, cursor: 5},
		{name: "expired, of another holder", before: []step{{"replica-1", -time.Minute, 5, false}}, ok: true, cursor: 5},
		{name: "held by this holder, then another", before: []step{{holder, -time.Minute, 3, false}, {"replica-1", time.Minute, 5, false}}},
	} {
		for store, newStore := range stores() {
			t.Run(tc.name+"/"+store, func(t *testing.T) {
				ctx := context.Background()
				s := newStore(t)
				for _, st := range tc.before {
					st.do(t, s, name)
				}
				logs, log := newLogs()
				held, err := lease.NewClaim(s, name, holder, time.Minute, log).Acquire(ctx)
				if err != nil || (held != nil) != tc.ok {
					t.Fatalf("Acquire = %v, %v; want the lease: %v", held, err, tc.ok)
				}
				takeovers := logs.lines("INFO", "lease: took over", "lease=job", "holder=replica-0")
				if tc.takeover != (len(takeovers) == 1) || len(logs.lines()) != len(takeovers) {
					t.Fatalf("logged %q; want a takeover: %v", logs.lines(), tc.takeover)
				}
				if held == nil {
					return
				}
				defer held.Release()
				if held.Cursor() != tc.cursor {
					t.Fatalf("cursor %d, want %d", held.Cursor(), tc.cursor)
				}
				// Held, by the Claim's holder alone: the probe left nothing.
				if _, ok, err := s.AcquireLease(ctx, name, "intruder", time.Minute); err != nil || ok {
					t.Fatalf("another holder took the Claim's lease: %v, %v", ok, err)
				}
				if ok, err := s.RenewLease(ctx, name, holder, time.Minute, 9); err != nil || !ok {
					t.Fatalf("the Claim's holder does not hold the lease: %v, %v", ok, err)
				}
			})
		}
	}
}

// step is what a holder of another process did to a lease.
type step struct {
	holder  string
	ttl     time.Duration
	cursor  int64
	release bool
}

func (st step) do(t *testing.T, s lease.Store, name string) {
	t.Helper()
	ctx := context.Background()
	if _, ok, err := s.AcquireLease(ctx, name, st.holder, time.Minute); err != nil || !ok {
		t.Fatalf("%s: acquire: %v, %v", st.holder, ok, err)
	}
	if ok, err := s.RenewLease(ctx, name, st.holder, st.ttl, st.cursor); err != nil || !ok {
		t.Fatalf("%s: renew: %v, %v", st.holder, ok, err)
	}
	if st.release {
		if err := s.ReleaseLease(ctx, name, st.holder); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOneHeldLeasePerHolderInAProcess: in one process, a lease is held
// under a holder once at a time, through Acquire and Claims alike; after
// Release, it is taken again at once.
func TestOneHeldLeasePerHolderInAProcess(t *testing.T) {
	ctx := context.Background()
	for store, newStore := range stores() {
		t.Run(store, func(t *testing.T) {
			s := newStore(t)
			log := slog.New(slog.DiscardHandler)
			a, err := lease.Acquire(ctx, s, "job", "replica-0", time.Minute, log)
			if err != nil || a == nil {
				t.Fatalf("a: %v, %v", a, err)
			}
			claim := lease.NewClaim(s, "job", "replica-0", time.Minute, log)
			for i, acquire := range []func() (*lease.Held, error){
				func() (*lease.Held, error) { return lease.Acquire(ctx, s, "job", "replica-0", time.Minute, log) },
				func() (*lease.Held, error) { return claim.Acquire(ctx) },
				func() (*lease.Held, error) { return claim.Acquire(ctx) },
			} {
				if b, err := acquire(); err != nil || b != nil {
					t.Fatalf("acquire %d took the lease the process holds: %v, %v", i, b, err)
				}
			}
			// Another lease, and the same one on another store, are not held.
			if b, err := lease.Acquire(ctx, s, "job2", "replica-0", time.Minute, log); err != nil || b == nil {
				t.Fatalf("job2: %v, %v", b, err)
			} else {
				b.Release()
			}
			if b, err := lease.Acquire(ctx, memstore.New(), "job", "replica-0", time.Minute, log); err != nil || b == nil {
				t.Fatalf("job on another store: %v, %v", b, err)
			} else {
				b.Release()
			}
			if err := a.Save(ctx, 4); err != nil {
				t.Fatal(err)
			}
			a.Release()
			b, err := claim.Acquire(ctx)
			if err != nil || b == nil || b.Cursor() != 4 {
				t.Fatalf("after a's Release: %v, %v", b, err)
			}
			// A second Release of a does not let b's lease go.
			a.Release()
			if _, ok, err := s.AcquireLease(ctx, "job", "replica-1", time.Minute); err != nil || ok {
				t.Fatalf("a's second Release let b's lease go: %v, %v", ok, err)
			}
			b.Release()
			if _, ok, err := s.AcquireLease(ctx, "job", "replica-1", time.Minute); err != nil || !ok {
				t.Fatalf("b's Release kept the lease: %v, %v", ok, err)
			}
		})
	}
}
