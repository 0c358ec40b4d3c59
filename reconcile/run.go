package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/lease"
)

// maxFailedPages is how many pages in a row the store may fail to write
// before the sweep stops: the store is down, not one page bad.
const maxFailedPages = 3

// run reconciles once, as Run says. With fresh above 0 it skips the run
// (errFresh) if one completed less than fresh ago, and returns its time.
func (r *Reconciler) run(ctx context.Context, fresh time.Duration) (Report, time.Time, error) {
	ctx, span := r.tel.start(ctx)
	report, last, err := r.sweep(ctx, fresh)
	r.tel.ran(ctx, span, report, err)
	return report, last, err
}

// sweep is run without its telemetry.
func (r *Reconciler) sweep(ctx context.Context, fresh time.Duration) (Report, time.Time, error) {
	src, log := r.cfg.Source, r.cfg.Logger
	report := Report{Issuer: src.Issuer(), Started: r.cfg.Now()}
	if !r.running.TryLock() {
		return report, time.Time{}, ErrRunning
	}
	defer r.running.Unlock()
	held, err := lease.Acquire(ctx, r.cfg.Store, r.lease, r.cfg.Holder, r.cfg.LeaseTTL, log)
	switch {
	case err != nil:
		return report, time.Time{}, fmt.Errorf("reconcile: taking the lease: %w", err)
	case held == nil:
		return report, time.Time{}, ErrRunning
	}
	defer held.Release()
	ctx = held.Context()
	// The lease's cursor is when the last complete run started, in Unix ms.
	if last := time.UnixMilli(held.Cursor()); fresh > 0 && held.Cursor() > 0 && report.Started.Sub(last) < fresh {
		return report, last, errFresh
	}

	if report.Total, err = src.Count(ctx); err != nil {
		return r.finish(ctx, report, fmt.Errorf("reconcile: counting the provider's users: %w", err))
	}
	log.InfoContext(ctx, "reconcile: started", "issuer", report.Issuer, "total", report.Total)
	var failed []error // pages that failed
	inARow := 0        // pages the store failed to write, in a row
	lastLog := report.Started
	l := &lister{src: src, size: r.cfg.PageSize, listed: make(map[string]struct{}, min(report.Total, 1<<20))}
	pages, stop := l.start(ctx)
	defer stop()
	for p := range pages {
		offset, page := p.offset, p.page
		if p.err == nil {
			p.err = ctx.Err()
		}
		if p.err != nil {
			failed = append(failed, fmt.Errorf("listing users from %d: %w", offset, p.err))
			break
		}
		report.Listed += len(page)
		if len(page) == 0 {
			continue // every user of the page was listed already
		}
		if err := r.write(ctx, &report, page); err != nil {
			failed = append(failed, fmt.Errorf("writing the page at offset %d: %w", offset, err))
			if inARow++; ctx.Err() != nil || inARow >= maxFailedPages {
				break
			}
		} else {
			inARow = 0
		}
		r.progress(report)
		if now := r.cfg.Now(); now.Sub(lastLog) >= 10*time.Second {
			lastLog = now
			log.InfoContext(ctx, "reconcile: progress", "issuer", report.Issuer, "report", report)
		}
	}
	stop()
	if err := ctx.Err(); err != nil && len(failed) == 0 {
		failed = append(failed, err) // never a complete sweep
	}
	if len(failed) > 0 {
		return r.finish(ctx, report, fmt.Errorf("reconcile: incomplete sweep, nothing deleted: %w", errors.Join(failed...)))
	}
	report.Complete = true
	err = r.deleteUnlisted(ctx, &report, l.listed)
	if err == nil {
		held.SetCursor(report.Started.UnixMilli()) // saved by Release
	}
	return r.finish(ctx, report, err)
}

// write applies one page as one batch.
func (r *Reconciler) write(ctx context.Context, report *Report, page []usersync.Write) error {
	ctx, span := r.tel.page(ctx, len(page))
	defer span.End()
	outcomes, err := r.cfg.Syncer.UpsertBatch(ctx, page)
	if outcomes == nil && err != nil {
		span.SetStatus(codes.Error, "the store failed") // its error may quote data
		return err                                      // the store failed: nothing applied
	}
	for _, o := range outcomes {
		switch o {
		case usersync.Created:
			report.Created++
		case usersync.Updated:
			report.Updated++
		default:
			report.Unchanged++
		}
	}
	if err != nil {
		// Malformed users were skipped (their outcome is Stale, counted
		// above); the error says which and why, never their values.
		n := 1
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			n = len(joined.Unwrap())
		}
		report.Skipped += n
		report.Unchanged -= n
		r.cfg.Logger.WarnContext(ctx, "reconcile: skipped users that cannot be stored", "issuer", report.Issuer, "count", n, "err", err)
	}
	return nil
}

// progress calls OnProgress, if set.
func (r *Reconciler) progress(report Report) {
	if r.cfg.OnProgress != nil {
		report.Refused = append([]string(nil), report.Refused...)
		r.cfg.OnProgress(report)
	}
}

// finish completes report, logs its summary and reports it.
func (r *Reconciler) finish(ctx context.Context, report Report, err error) (Report, time.Time, error) {
	report.Finished = r.cfg.Now()
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, lease.ErrLost) {
		err = fmt.Errorf("%w: %w (%w)", ErrRunning, cause, err) // the lease was lost: say so first
	}
	r.progress(report)
	if err != nil {
		r.cfg.Logger.ErrorContext(ctx, "reconcile: failed", "issuer", report.Issuer, "report", report, "took", report.Finished.Sub(report.Started), "err", err)
	} else {
		r.cfg.Logger.InfoContext(ctx, "reconcile: done", "issuer", report.Issuer, "report", report, "took", report.Finished.Sub(report.Started))
	}
	return report, time.Time{}, err
}
