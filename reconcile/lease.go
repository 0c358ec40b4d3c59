package reconcile

import (
	"context"
	"fmt"
	"time"
)

// heldLease is the reconcile's lease while a run holds it: a goroutine
// renews it every third of its TTL and cancels the run's context if it is
// lost (another holder took it over after it expired).
type heldLease struct {
	ctx    context.Context // the run's: cancelled when the lease is lost
	r      *Reconciler
	cursor int64 // the start of the last complete run, in Unix ms; 0 if none
	done   chan struct{}
	stop   context.CancelCauseFunc
}

// acquire takes the lease or fails with ErrRunning.
func (r *Reconciler) acquire(ctx context.Context) (*heldLease, error) {
	acquired := time.Now()
	cursor, ok, err := r.cfg.Store.AcquireLease(ctx, r.lease, r.cfg.Holder, r.cfg.LeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("reconcile: taking the lease: %w", err)
	}
	if !ok {
		return nil, ErrRunning
	}
	runCtx, stop := context.WithCancelCause(ctx)
	l := &heldLease{ctx: runCtx, r: r, cursor: cursor, done: make(chan struct{}), stop: stop}
	go l.keep(ctx, acquired)
	return l, nil
}

// keep renews the lease until the run ends. The run must end before the
// lease can expire, renewed or not: each renewal has until a fifth of the
// TTL before expiry, counted from the start of the last renewal that
// succeeded, and when that moment passes without one the run is cancelled
// (a renewal that hangs cannot keep it going).
func (l *heldLease) keep(parent context.Context, acquired time.Time) {
	defer close(l.done)
	ttl := l.r.cfg.LeaseTTL
	margin := ttl / 5
	deadline := acquired.Add(ttl - margin) // the run must be over by then, unless renewed
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	lost := time.NewTimer(time.Until(deadline))
	defer lost.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-lost.C:
			l.stop(fmt.Errorf("%w: the lease could not be renewed before it expires", ErrRunning))
			return
		case <-tick.C:
		}
		start := time.Now()
		rctx, cancel := context.WithDeadline(parent, deadline)
		ok, err := l.r.cfg.Store.RenewLease(rctx, l.r.lease, l.r.cfg.Holder, ttl, l.cursor)
		cancel()
		switch {
		case err == nil && ok:
			deadline = start.Add(ttl - margin)
			lost.Reset(time.Until(deadline))
		case err == nil:
			l.stop(fmt.Errorf("%w: the lease was taken over", ErrRunning))
			return
		default:
			l.r.cfg.Logger.WarnContext(parent, "reconcile: renewing the lease failed; retrying", "err", err)
		}
	}
}

// lastComplete returns when the last complete run started, or zero.
func (l *heldLease) lastComplete() time.Time {
	if l.cursor <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(l.cursor)
}

// complete records a complete run that started at start.
func (l *heldLease) complete(start time.Time) {
	l.stop(nil) // stop renewing before writing the cursor
	<-l.done
	l.cursor = start.UnixMilli()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), l.r.cfg.LeaseTTL)
	defer cancel()
	if _, err := l.r.cfg.Store.RenewLease(ctx, l.r.lease, l.r.cfg.Holder, l.r.cfg.LeaseTTL, l.cursor); err != nil {
		l.r.cfg.Logger.WarnContext(l.ctx, "reconcile: recording the run in the lease failed", "err", err)
	}
}

// release stops renewing and lets the lease go.
func (l *heldLease) release() {
	l.stop(nil)
	<-l.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), l.r.cfg.LeaseTTL)
	defer cancel()
	if err := l.r.cfg.Store.ReleaseLease(ctx, l.r.lease, l.r.cfg.Holder); err != nil {
		l.r.cfg.Logger.WarnContext(l.ctx, "reconcile: releasing the lease failed; it expires", "err", err)
	}
}
