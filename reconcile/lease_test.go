package reconcile_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/reconcile"
)

// waitFor polls cond for up to 30 seconds: the deadline of a condition
// that holds in milliseconds on an idle machine.
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

const (
	skippedForAnother = "INFO reconcile: skipped: another replica holds the lease"
	skippedForOwn     = "INFO reconcile: skipped: a run of this issuer is going on in this process"
	tookOver          = "INFO lease: took over a lease that another process held under this holder"
)

// TestSkippedRunsAreLogged: a run skipped because another is going on, in
// another replica or this one, says so at Info, once, with the issuer.
func TestSkippedRunsAreLogged(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 30, 1)...)
	inside, release := make(chan struct{}), make(chan struct{})
	e.onPage(func(n, _ int) {
		if n == 2 {
			close(inside)
			<-release
		}
	})
	logsA, logA := telemetrytest.NewLogs()
	a := e.reconciler(reconcile.Config{PageSize: 10, Holder: "replica-a", Logger: logA})
	done := make(chan error)
	go func() {
		_, err := a.Run(context.Background())
		done <- err
	}()
	<-inside
	defer func() {
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	for _, tc := range []struct {
		name string
		run  func(log *slog.Logger) error
		want string
	}{
		{"another replica's Run", func(log *slog.Logger) error {
			_, err := e.reconciler(reconcile.Config{Holder: "replica-b", Logger: log}).Run(context.Background())
			return err
		}, skippedForAnother},
		{"another replica's RunEvery", func(log *slog.Logger) error {
			// Its first turn is skipped; the next is an hour away.
			r := e.reconciler(reconcile.Config{Holder: "replica-b", Logger: log})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error)
			go func() { done <- r.RunEvery(ctx, time.Hour) }()
			waitFor(t, "the skipped turn", func() bool { return len(recorded(log).With("INFO reconcile: skipped")) > 0 })
			cancel()
			<-done
			return reconcile.ErrRunning
		}, skippedForAnother},
		{"a second Run in this process", func(log *slog.Logger) error {
			r := e.reconciler(reconcile.Config{Holder: "replica-a", Logger: log})
			_, err := r.Run(context.Background()) // waits for a's lease, as another replica's would
			return err
		}, skippedForAnother},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs, log := telemetrytest.NewLogs()
			if err := tc.run(log); !errors.Is(err, reconcile.ErrRunning) {
				t.Fatalf("%v, want ErrRunning", err)
			}
			lines := logs.With("INFO reconcile: skipped")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) || !strings.Contains(lines[0], "issuer="+issuer) {
				t.Fatalf("logged:\n%s\nwant one line %q with the issuer", logs, tc.want)
			}
			if other := logs.With("ERROR"); len(other) > 0 {
				t.Fatalf("a skipped run logged an error:\n%s", logs)
			}
		})
	}
	// The same Reconciler, while its run goes on.
	if _, err := a.Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
		t.Fatalf("a again: %v, want ErrRunning", err)
	}
	if lines := logsA.With("INFO reconcile: skipped"); len(lines) != 1 || !strings.HasPrefix(lines[0], skippedForOwn) || !strings.Contains(lines[0], "issuer="+issuer) {
		t.Fatalf("logged:\n%s\nwant one line %q with the issuer", logsA, skippedForOwn)
	}
}

// recorded returns the logs of a logger that telemetrytest.NewLogs made.
func recorded(log *slog.Logger) *telemetrytest.Logs { return log.Handler().(*telemetrytest.Logs) }

// dyingStore is the store as a process about to be killed sees it: once
// dead, nothing more of its leases reaches the store (no renewal, no
// release).
type dyingStore struct {
	leasing
	dead atomic.Bool
}

var errDead = errors.New("the process is dead")

func (d *dyingStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	if d.dead.Load() {
		return 0, false, errDead
	}
	return d.leasing.AcquireLease(ctx, name, holder, ttl)
}

func (d *dyingStore) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error) {
	if d.dead.Load() {
		return false, errDead
	}
	return d.leasing.RenewLease(ctx, name, holder, ttl, cursor)
}

func (d *dyingStore) ReleaseLease(ctx context.Context, name, holder string) error {
	if d.dead.Load() {
		return errDead
	}
	return d.leasing.ReleaseLease(ctx, name, holder)
}

// TestARestartedReplicaSweepsAtOnce: a replica with a stable Holder whose
// process is killed in the middle of a RunEvery sweep sweeps again as soon
// as it is restarted, though its dead process's leases have most of a
// minute left, and says so at Info; another replica waits. After the
// restarted replica's complete sweep, neither sweeps before the interval
// ends.
func TestARestartedReplicaSweepsAtOnce(t *testing.T) {
	store := memstore.New()
	dying := &dyingStore{leasing: store}
	e := newEnv(t, dying)
	e.api.Put(apiUsers(0, 30, 1)...)
	inside, killed := make(chan struct{}), make(chan struct{})
	e.onPage(func(n, _ int) {
		if n == 2 {
			close(inside)
			<-killed
		}
	})
	ctx, kill := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- e.reconciler(reconcile.Config{Holder: "replica-a", PageSize: 10, LeaseTTL: time.Minute}).RunEvery(ctx, time.Hour)
	}()
	<-inside
	dying.dead.Store(true) // killed mid-sweep: its leases stay held for a minute
	kill()
	close(killed)
	<-done
	e.api.OnPage(nil)

	// The restarted process of replica-a, and another replica, on the
	// same store.
	syncer, err := usersync.New(usersync.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	restart := func(holder string, log *slog.Logger, onProgress func(reconcile.Report)) *reconcile.Reconciler {
		r, err := reconcile.New(reconcile.Config{Syncer: syncer, Source: e.list, Holder: holder, LeaseTTL: time.Minute, Logger: log, OnProgress: onProgress})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	logsB, logB := telemetrytest.NewLogs()
	if _, err := restart("replica-b", logB, nil).Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) || len(logsB.With(skippedForAnother)) != 1 {
		t.Fatalf("replica b: %v, want ErrRunning; logged:\n%s", err, logsB)
	}

	logsA, logA := telemetrytest.NewLogs()
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second) // half the dead leases' minute
	defer stop()
	var complete atomic.Bool
	err = restart("replica-a", logA, func(r reconcile.Report) {
		if r.Complete && !r.Finished.IsZero() {
			complete.Store(true)
			stop()
		}
	}).RunEvery(ctx, time.Hour)
	if !complete.Load() {
		t.Fatalf("the restarted replica did not sweep at once: %v; logged:\n%s", err, logsA)
	}
	if lines := logsA.With(tookOver); len(lines) != 1 || !strings.Contains(lines[0], "issuer="+issuer) || !strings.Contains(lines[0], "holder=replica-a") {
		t.Fatalf("the takeover was not logged at Info with the issuer and the holder:\n%s", logsA)
	}
	e.requireLive(apiUsers(0, 30, 1))

	// Its complete sweep holds back every replica's turns, its own too:
	// the first turn of each is skipped.
	before := e.api.Requests()
	for _, holder := range []string{"replica-a", "replica-b"} {
		swept, _ := turns(t, func(log *slog.Logger, onProgress func(reconcile.Report)) *reconcile.Reconciler {
			return restart(holder, log, onProgress)
		}, time.Hour, aTurn)
		if n := e.api.Requests() - before; len(swept) > 0 || n != 0 {
			t.Fatalf("%s swept again within the interval of the complete sweep: %d requests", holder, n)
		}
	}
}
