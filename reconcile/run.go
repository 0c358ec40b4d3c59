package reconcile

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/usersync/usersync"
)

// maxFailedPages is how many pages in a row the store may fail to write
// before the sweep stops: the store is down, not one page bad.
const maxFailedPages = 3

// run reconciles once, as Run says. With every above 0 (RunEvery's
// interval) it skips the run (errFresh) if a complete one started less than
// every ago, and after a complete run marks it so for every.
func (r *Reconciler) run(ctx context.Context, every time.Duration) (Report, error) {
	ctx, span := r.tel.start(ctx)
	report, err := r.sweep(ctx, every)
	r.tel.ran(ctx, span, err, report.Listed, report.Deleted,
		outcomes{created: report.Created, updated: report.Updated, unchanged: report.Unchanged, skipped: report.Skipped, deleted: report.Deleted})
	return report, err
}

// sweep is run without its telemetry.
func (r *Reconciler) sweep(ctx context.Context, every time.Duration) (report Report, err error) {
	src, log := r.cfg.Source, r.cfg.Logger
	report = Report{Issuer: src.Issuer(), Started: r.cfg.Now()}
	ctx, end, err := r.runs.begin(ctx, report.Started, every)
	if err != nil {
		return report, err
	}
	defer func() { end(err == nil) }()

	if report.Total, err = src.Count(ctx); err != nil {
		return r.finish(ctx, report, fmt.Errorf("reconcile: counting the provider's users: %w", err))
	}
	// The issuer's users that were live before the run: what the guards
	// count over, and the only users a run may delete.
	before, err := r.liveUsers(ctx, report.Issuer)
	if err != nil {
		return r.finish(ctx, report, err)
	}
	log.InfoContext(ctx, "reconcile: started", "issuer", report.Issuer, "total", report.Total, "stored", len(before))
	l := r.newLister(report.Total)
	var failed []error // pages that failed
	if len(before) == 0 {
		// A first import: nothing to delete, nothing to compare with. Write
		// the pages as they come.
		failed = r.listAndWrite(ctx, &report, l)
	} else {
		// List every page before writing one: a list that the guards
		// refuse (another instance's users, or too many deletions) must
		// leave the store as it was, its foreign users unimported.
		kept, err := r.survey(ctx, l)
		if err != nil {
			return r.finish(ctx, report, fmt.Errorf("reconcile: incomplete sweep, nothing written: %w", err))
		}
		if err := r.guard(ctx, &report, before, l.listed); err != nil {
			return r.finish(ctx, report, err)
		}
		if kept == nil {
			// Too many users to keep in memory: list them again to write.
			l = r.newLister(report.Total)
			failed = r.listAndWrite(ctx, &report, l)
		} else {
			failed = r.writePages(ctx, &report, kept)
		}
	}
	if err := ctx.Err(); err != nil && len(failed) == 0 {
		failed = append(failed, err) // never a complete sweep
	}
	if len(failed) > 0 {
		return r.finish(ctx, report, fmt.Errorf("reconcile: incomplete sweep, nothing deleted: %w", errors.Join(failed...)))
	}
	report.Complete = true
	return r.finish(ctx, report, r.deleteUnlisted(ctx, &report, before, l.listed))
}

// newLister returns a lister of the Source, for a provider of about total
// users.
func (r *Reconciler) newLister(total int) *lister[usersync.Write] {
	return newLister(r.cfg.Source.Page, func(w *usersync.Write) string { return w.Subject }, r.cfg.PageSize, total, "user")
}

// listAndWrite writes the pages of l as they are listed, and returns the
// errors of the pages that failed. l.listed is complete when none did.
func (r *Reconciler) listAndWrite(ctx context.Context, report *Report, l *lister[usersync.Write]) []error {
	pages, stop := l.start(ctx)
	defer stop()
	return r.writePages(ctx, report, pages)
}

// survey lists every page of l without writing any. It returns the pages,
// or nil when they hold more than r.keep bytes (the sweep then lists them
// again to write them), or the error that ended the listing.
func (r *Reconciler) survey(ctx context.Context, l *lister[usersync.Write]) (iter.Seq[fetched[usersync.Write]], error) {
	pages, stop := l.start(ctx)
	defer stop()
	var kept []fetched[usersync.Write]
	n := 0
	for p := range pages {
		if p.err == nil {
			p.err = ctx.Err()
		}
		if p.err != nil {
			return nil, fmt.Errorf("listing users from %d: %w", p.offset, p.err)
		}
		for i := range p.page {
			n += writeSize(&p.page[i])
		}
		if n > r.keep {
			kept = nil // listed again to write: keep only the subjects
		} else {
			kept = append(kept, p)
		}
	}
	if n > r.keep {
		return nil, nil
	}
	return slices.Values(kept), nil
}

// writePages writes the pages as they come, until they end or the store
// fails maxFailedPages in a row, and returns the errors of the pages that
// failed.
func (r *Reconciler) writePages(ctx context.Context, report *Report, pages iter.Seq[fetched[usersync.Write]]) []error {
	var failed []error
	inARow := 0 // pages the store failed to write, in a row
	lastLog := report.Started
	for p := range pages {
		offset, page := p.offset, p.page
		if p.err == nil {
			p.err = ctx.Err()
		}
		if p.err != nil {
			return append(failed, fmt.Errorf("listing users from %d: %w", offset, p.err))
		}
		report.Listed += len(page)
		if len(page) == 0 {
			continue // every user of the page was listed already
		}
		if err := r.write(ctx, report, page); err != nil {
			failed = append(failed, fmt.Errorf("writing the page at offset %d: %w", offset, err))
			if inARow++; ctx.Err() != nil || inARow >= maxFailedPages {
				return failed
			}
		} else {
			inARow = 0
		}
		r.progress(*report)
		if now := r.cfg.Now(); now.Sub(lastLog) >= 10*time.Second {
			lastLog = now
			r.cfg.Logger.InfoContext(ctx, "reconcile: progress", "issuer", report.Issuer, "report", *report)
		}
	}
	return failed
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
func (r *Reconciler) finish(ctx context.Context, report Report, err error) (Report, error) {
	report.Finished = r.cfg.Now()
	err = lost(ctx, err) // the lease was lost: say so first
	r.progress(report)
	if err != nil {
		r.cfg.Logger.ErrorContext(ctx, "reconcile: failed", "issuer", report.Issuer, "report", report, "took", report.Finished.Sub(report.Started), "err", err)
	} else {
		r.cfg.Logger.InfoContext(ctx, "reconcile: done", "issuer", report.Issuer, "report", report, "took", report.Finished.Sub(report.Started))
	}
	return report, err
}

// writeSize estimates the memory a listed write holds: its strings and
// metadata, and a fixed part for the rest.
func writeSize(w *usersync.Write) int {
	p := &w.Profile
	return 512 + len(w.Subject) + len(p.Name) + len(p.GivenName) + len(p.FamilyName) + len(p.Email) +
		len(p.PictureURL) + len(p.Username) + len(p.PhoneNumber) + len(p.ExternalID) + len(p.Metadata)
}
