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
	cursor, ok, err := r.cfg.Store.AcquireLease(ctx, r.lease, r.cfg.Holder, r.cfg.LeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("reconcile: taking the lease: %w", err)
	}
	if !ok {
		return nil, ErrRunning
	}
	runCtx, stop := context.WithCancelCause(ctx)
	l := &heldLease{ctx: runCtx, r: r, cursor: cursor, done: make(chan struct{}), stop: stop}
	go l.keep(ctx)
	return l, nil
}

// keep renews the lease until the run ends, and cancels the run when it is
// lost or cannot be renewed before it expires.
func (l *heldLease) keep(parent context.Context) {
	defer close(l.done)
	ttl := l.r.cfg.LeaseTTL
	renewed := time.Now()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-tick.C:
		}
		ok, err := l.r.cfg.Store.RenewLease(parent, l.r.lease, l.r.cfg.Holder, ttl, l.cursor)
		switch {
		case err == nil && ok:
			renewed = time.Now()
		case err == nil:
			l.stop(fmt.Errorf("%w: the lease was taken over", ErrRunning))
			return
		case time.Since(renewed) >= ttl:
			l.stop(fmt.Errorf("%w: the lease expired: renewing it failed: %w", ErrRunning, err))
			return
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
	if _, err := l.r.cfg.Store.RenewLease(context.WithoutCancel(l.ctx), l.r.lease, l.r.cfg.Holder, l.r.cfg.LeaseTTL, l.cursor); err != nil {
		l.r.cfg.Logger.WarnContext(l.ctx, "reconcile: recording the run in the lease failed", "err", err)
	}
}

// release stops renewing and lets the lease go.
func (l *heldLease) release() {
	l.stop(nil)
	<-l.done
	if err := l.r.cfg.Store.ReleaseLease(context.WithoutCancel(l.ctx), l.r.lease, l.r.cfg.Holder); err != nil {
		l.r.cfg.Logger.WarnContext(l.ctx, "reconcile: releasing the lease failed; it expires", "err", err)
	}
}
