package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/lease"
)

// runner is what the reconcilers of users and of organizations share
// around a sweep: one run at a time, in this process (a mutex) and across
// replicas (a lease of the issuer), RunEvery's turns (a second lease, held
// for an interval after a complete sweep), and the logs of both.
type runner struct {
	what    string // the prefix of the log lines and errors: "reconcile", "reconcile organizations"
	issuer  string
	holder  string
	ttl     time.Duration
	now     func() time.Time
	log     *slog.Logger
	leases  lease.Store
	claim   *lease.Claim // of the run's lease, by holder
	fresh   string       // the name of the lease of the last complete RunEvery sweep
	running sync.Mutex   // held by a run: a second one in this process is ErrRunning
}

// newRunner returns the runner of the issuer's reconcile whose leases are
// named runPrefix and freshPrefix followed by the issuer.
func newRunner(what, issuer, runPrefix, freshPrefix string, leases lease.Store, holder string, ttl time.Duration, now func() time.Time, log *slog.Logger) *runner {
	name := leaseName(runPrefix, issuer)
	return &runner{
		what: what, issuer: issuer, holder: holder, ttl: ttl, now: now, log: log, leases: leases,
		claim: lease.NewClaim(leases, name, holder, ttl, log.With("issuer", issuer)),
		fresh: leaseName(freshPrefix, issuer),
	}
}

// begin starts a run that started at started: it fails with ErrRunning if
// a run is going on in this process or another replica holds the lease,
// and, with every above 0 (RunEvery's interval), with errFresh if a
// complete run started less than every ago. Otherwise it returns the run's
// context, which ends when ctx does or the lease is lost, and end, which
// the run calls once, when it is over, with whether it completed: it
// marks a complete RunEvery run so for every, and lets go of what begin
// took.
func (r *runner) begin(ctx context.Context, started time.Time, every time.Duration) (context.Context, func(complete bool), error) {
	if !r.running.TryLock() {
		r.log.InfoContext(ctx, r.what+": skipped: a run of this issuer is going on in this process", "issuer", r.issuer)
		return ctx, nil, ErrRunning
	}
	held, err := r.claim.Acquire(ctx)
	switch {
	case err != nil:
		r.running.Unlock()
		return ctx, nil, fmt.Errorf("%s: taking the lease: %w", r.what, err)
	case held == nil:
		r.running.Unlock()
		r.log.InfoContext(ctx, r.what+": skipped: another replica holds the lease of this issuer's reconcile", "issuer", r.issuer)
		return ctx, nil, ErrRunning
	}
	release := func() {
		held.Release()
		r.running.Unlock()
	}
	ctx = held.Context()
	if every <= 0 {
		return ctx, func(bool) { release() }, nil
	}
	turn, err := r.takeTurn(ctx)
	switch {
	case err != nil:
		release()
		return ctx, nil, fmt.Errorf("%s: taking the lease of the last complete run: %w", r.what, err)
	case turn == "":
		release()
		return ctx, nil, errFresh
	}
	return ctx, func(complete bool) {
		// Ended before the run's lease is released: only the holder of
		// that one touches this one.
		r.endTurn(ctx, turn, started, every, complete)
		release()
	}, nil
}

// takeTurn takes the lease of the last complete RunEvery sweep (r.fresh)
// for the run's holder, which it returns; or returns "" if the lease is
// held: a sweep that completed less than the interval ago holds it (or
// the run of a replica that stopped, until it expires with that run's
// lease). Only the holder of the run's lease calls it.
func (r *runner) takeTurn(ctx context.Context) (string, error) {
	// Held while the run lasts, as the run's lease is, and under its
	// holder: if this replica stops, it expires as that one does, and with
	// a stable Holder the restarted replica takes both back at once.
	turn := r.holder
	_, ok, err := r.leases.AcquireLease(ctx, r.fresh, turn, r.ttl)
	if err != nil || !ok {
		return "", err
	}
	return turn, nil
}

// endTurn ends the turn that takeTurn took: after a complete run, the lease
// passes to a holder of its own and stays held until every after the run
// started, so that every replica (this one too, restarted or not) skips
// the sweeps due before then; after another run, it is released for the
// next turn of any replica to sweep.
func (r *runner) endTurn(ctx context.Context, turn string, started time.Time, every time.Duration, complete bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.ttl)
	defer cancel()
	err := r.leases.ReleaseLease(ctx, r.fresh, turn)
	switch left := every - r.now().Sub(started); {
	case complete && left > 0:
		// No other replica takes it in between: this one still holds the
		// run's lease.
		ok := false
		if err == nil {
			_, ok, err = r.leases.AcquireLease(ctx, r.fresh, lease.NewHolder(), left)
		}
		if err != nil || !ok {
			r.log.WarnContext(ctx, r.what+": marking the run complete failed: another replica may sweep before the interval ends", "issuer", r.issuer, "held_by_another", err == nil, "err", err)
		}
	case err != nil:
		r.log.WarnContext(ctx, r.what+": releasing the lease of the last complete run failed; it expires", "issuer", r.issuer, "err", err)
	}
}

// lost returns err, led by ErrRunning if the run's lease was lost (ctx is
// the run's): a run cut short by another replica's takeover says so
// first.
func lost(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, lease.ErrLost) {
		return fmt.Errorf("%w: %w (%w)", ErrRunning, cause, err)
	}
	return err
}

// runEvery calls run at once and then every interval, until ctx ends, as
// the reconcilers' RunEvery say; it returns ctx's error. A run's error is
// logged with its report, not returned.
func (r *runner) runEvery(ctx context.Context, interval time.Duration, run func(context.Context, time.Duration) (slog.LogValuer, error)) error {
	if interval <= 0 {
		return fmt.Errorf("%w: %s: RunEvery needs an interval above 0", usersync.ErrInvalid, r.what)
	}
	for {
		report, err := run(ctx, interval)
		wait := interval
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errFresh):
			// Due when the last complete sweep is interval old, whoever
			// ran it: a time only the lease knows. Ask it again soon.
			wait = min(interval, r.ttl)
			r.log.DebugContext(ctx, r.what+": skipped: a replica completed one less than the interval ago", "issuer", r.issuer, "next_in", wait)
		case errors.Is(err, ErrRunning):
			// Logged by the run: skipped, or the lease lost.
		case err != nil:
			r.log.ErrorContext(ctx, r.what+": run failed", "issuer", r.issuer, "report", report, "err", err)
		}
		t := time.NewTimer(max(wait, min(interval, time.Second))) // never a busy loop
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// errFresh reports a RunEvery turn skipped because a replica completed a
// sweep less than the interval ago.
var errFresh = errors.New("reconcile: a replica completed a run recently")
