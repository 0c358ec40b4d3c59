package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// storedOrgs is what the store held of the issuer before a run: what the
// guards count over, and the only organizations and memberships the run
// may delete.
type storedOrgs struct {
	orgs map[string]struct{} // the live organizations, by ID
	// members holds the live memberships of those organizations, by
	// organization ID and user subject, with their key, ID and CreatedAt
	// only: what a delete names.
	members  map[string]map[string]orgs.Membership
	nMembers int
}

// orgListing is one listing of the provider's organizations and their
// memberships: what a sweep learns, for the guards and the deletions.
type orgListing struct {
	before *storedOrgs
	orgs   *lister[orgs.Organization] // its listed is the producer's until the listing ends
	// gone holds the organizations listed but deleted by the provider
	// before their memberships were: deletion candidates.
	gone map[string]struct{}
	// missing holds the memberships of before of the listed organizations
	// that their lists lack: deletion candidates.
	missing []orgs.Membership
}

// orgPage is what the listing yields, in order: a page of the provider's
// organizations, then pages of their memberships, or the error that ended
// the listing.
type orgPage struct {
	offset int // of the page of organizations, for errors
	// orgs is a page of organizations, written as one batch before their
	// memberships are listed; nil in a page of memberships.
	orgs []listedOrg
	// listed holds the organizations whose memberships were listed since
	// the previous page (with what the listing found), and members a
	// batch of their memberships, at most PageSize of them.
	listed  []listedOrg
	members []orgs.Membership
	err     error
}

// listedOrg is an organization the provider listed, and what listing its
// memberships found.
type listedOrg struct {
	org orgs.Organization
	// skip says why the organization cannot be stored ("" if it can): it
	// is neither written nor are its memberships listed.
	skip string
	// gone reports an organization that the provider no longer had when
	// its memberships were listed: none of them is written.
	gone bool
	// skipped counts its memberships that cannot be stored, of another
	// issuer or organization.
	skipped int
	// missing holds its memberships stored before the run that its list
	// lacks: deletion candidates.
	missing []orgs.Membership
}

// sweep is run without its telemetry.
func (r *OrganizationReconciler) sweep(ctx context.Context, every time.Duration) (report OrganizationReport, err error) {
	log := r.cfg.Logger
	report = OrganizationReport{Issuer: r.issuer, Started: r.cfg.Now()}
	ctx, end, err := r.runs.begin(ctx, report.Started, every)
	if err != nil {
		return report, err
	}
	defer func() { end(err == nil) }()

	before, err := r.stored(ctx)
	if err != nil {
		return r.finish(ctx, report, err)
	}
	log.InfoContext(ctx, "reconcile organizations: started", "issuer", r.issuer, "stored", len(before.orgs), "stored_memberships", before.nMembers)
	l := r.newListing(before)
	var failed []error
	if len(before.orgs) == 0 {
		// A first import: nothing to delete, nothing to compare with.
		failed = r.listAndWrite(ctx, &report, l)
	} else {
		// List everything before writing anything: a list the guards
		// refuse must leave the store as it was.
		kept, all, err := r.survey(ctx, l)
		if err != nil {
			return r.finish(ctx, report, fmt.Errorf("reconcile organizations: incomplete sweep, nothing written: %w", err))
		}
		if err := r.guard(ctx, &report, l, true); err != nil {
			return r.finish(ctx, report, err)
		}
		if all {
			failed = r.writePages(ctx, &report, l, slices.Values(kept))
		} else {
			// Too much to keep in memory: list it again to write.
			l = r.newListing(before)
			failed = r.listAndWrite(ctx, &report, l)
		}
	}
	if err := ctx.Err(); err != nil && len(failed) == 0 {
		failed = append(failed, err) // never a complete sweep
	}
	if len(failed) > 0 {
		return r.finish(ctx, report, fmt.Errorf("reconcile organizations: incomplete sweep, nothing deleted: %w", errors.Join(failed...)))
	}
	report.Complete = true
	return r.finish(ctx, report, r.deleteUnlisted(ctx, &report, l))
}

// stored reads the issuer's live organizations and their live memberships.
func (r *OrganizationReconciler) stored(ctx context.Context) (*storedOrgs, error) {
	const batch = 1000
	s := &storedOrgs{orgs: make(map[string]struct{}), members: make(map[string]map[string]orgs.Membership)}
	for after := ""; ; {
		os, err := r.store.Organizations(ctx, r.issuer, after, batch)
		if err != nil {
			return nil, fmt.Errorf("reconcile organizations: listing the stored organizations: %w", err)
		}
		for _, o := range os {
			s.orgs[o.ID] = struct{}{}
		}
		if len(os) < batch {
			break
		}
		after = os[len(os)-1].ID
	}
	for id := range s.orgs {
		for after := ""; ; {
			ms, err := r.store.Memberships(ctx, r.issuer, id, after, batch)
			if err != nil {
				return nil, fmt.Errorf("reconcile organizations: listing the stored memberships: %w", err)
			}
			for _, m := range ms {
				if s.members[id] == nil {
					s.members[id] = make(map[string]orgs.Membership)
				}
				s.members[id][m.UserSubject] = orgs.Membership{Issuer: m.Issuer, OrganizationID: m.OrganizationID, UserSubject: m.UserSubject, ID: m.ID, CreatedAt: m.CreatedAt}
				s.nMembers++
			}
			if len(ms) < batch {
				break
			}
			after = ms[len(ms)-1].UserSubject
		}
	}
	return s, nil
}

// newListing returns a listing of the Source, against before.
func (r *OrganizationReconciler) newListing(before *storedOrgs) *orgListing {
	return &orgListing{
		before: before,
		orgs:   newLister(r.cfg.Source.Organizations, func(o *orgs.Organization) string { return o.ID }, r.cfg.PageSize, len(before.orgs), "organization"),
		gone:   make(map[string]struct{}),
	}
}

// pages lists the pages of l in a goroutine, one ahead of the consumer:
// each page of organizations, then their memberships in pages of
// PageSize, so that writing a batch overlaps listing the next one.
func (r *OrganizationReconciler) pages(ctx context.Context, l *orgListing) (iter.Seq[orgPage], func()) {
	return ahead(ctx, func(ctx context.Context, send func(orgPage) bool) {
		l.orgs.each(ctx, func(p fetched[orgs.Organization]) bool {
			if p.err != nil {
				return send(orgPage{offset: p.offset, err: p.err})
			}
			head := orgPage{offset: p.offset, orgs: make([]listedOrg, 0, len(p.page))}
			var list []orgs.Organization
			for _, o := range p.page {
				lo := r.checkOrg(o)
				head.orgs = append(head.orgs, lo)
				if lo.skip == "" {
					list = append(list, lo.org)
				}
			}
			if !send(head) {
				return false
			}
			page, ok := orgPage{offset: p.offset}, true
			err := r.listAllMembers(ctx, l.before, list, func(lo listedOrg, ms []orgs.Membership) bool {
				page.listed = append(page.listed, lo)
				for len(ms) > 0 && ok {
					n := min(len(ms), r.cfg.PageSize-len(page.members))
					page.members, ms = append(page.members, ms[:n]...), ms[n:]
					if len(page.members) == r.cfg.PageSize {
						ok = send(page)
						page = orgPage{offset: p.offset}
					}
				}
				return ok
			})
			switch {
			case !ok:
				return false
			case err != nil:
				send(orgPage{offset: p.offset, err: err})
				return false
			case len(page.listed) > 0 || len(page.members) > 0:
				return send(page)
			}
			return true
		})
	})
}

// checkOrg returns o as listed: with the issuer's issuer if it has none,
// and skipped if it is of another issuer or has no ID.
func (r *OrganizationReconciler) checkOrg(o orgs.Organization) listedOrg {
	o.Issuer = strings.TrimRight(cmp.Or(o.Issuer, r.issuer), "/")
	lo := listedOrg{org: o}
	switch {
	case o.Issuer != r.issuer:
		lo.skip = "an organization of another issuer"
	case o.ID == "":
		lo.skip = "an organization without an ID"
	}
	return lo
}

// listAllMembers lists the memberships of os, Concurrency organizations
// at a time, and yields each organization with them, in the order of os,
// until yield returns false. It returns the first error of a listing, in
// that order.
func (r *OrganizationReconciler) listAllMembers(ctx context.Context, before *storedOrgs, os []orgs.Organization, yield func(listedOrg, []orgs.Membership) bool) error {
	type listed struct {
		lo      listedOrg
		members []orgs.Membership
		err     error
	}
	ctx, cancel := context.WithCancel(ctx)
	results := make([]chan listed, len(os))
	for i := range results {
		results[i] = make(chan listed, 1)
	}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	slots := make(chan struct{}, r.cfg.Concurrency)
	wg.Go(func() {
		for i, o := range os {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				results[i] <- listed{err: ctx.Err()}
				continue
			}
			wg.Go(func() {
				defer func() { <-slots }()
				lo, ms, err := r.listMembers(ctx, before, o)
				results[i] <- listed{lo, ms, err}
			})
		}
	})
	for i := range os {
		res := <-results[i]
		if res.err != nil {
			return res.err
		}
		if !yield(res.lo, res.members) {
			return nil
		}
	}
	return nil
}

// record notes what page tells of the deletions: the organizations gone
// and the memberships missing.
func (l *orgListing) record(page orgPage) {
	for _, lo := range page.listed {
		if lo.gone {
			l.gone[lo.org.ID] = struct{}{}
		}
		l.missing = append(l.missing, lo.missing...)
	}
}

// listMembers lists the memberships of o (checked by checkOrg); before, if
// set, gives those stored before the run that o's list lacks.
func (r *OrganizationReconciler) listMembers(ctx context.Context, before *storedOrgs, o orgs.Organization) (listedOrg, []orgs.Membership, error) {
	lo := listedOrg{org: o}
	l := newLister(func(ctx context.Context, offset, limit int) ([]orgs.Membership, error) {
		return r.cfg.Source.Memberships(ctx, o.ID, offset, limit)
	}, func(m *orgs.Membership) string { return m.UserSubject }, r.cfg.PageSize, 0, "membership")
	var members []orgs.Membership
	var err error
	l.each(ctx, func(p fetched[orgs.Membership]) bool {
		if err = p.err; err != nil {
			err = fmt.Errorf("listing the memberships of an organization from %d: %w", p.offset, err)
			return false
		}
		for _, m := range p.page {
			m.Issuer = strings.TrimRight(cmp.Or(m.Issuer, r.issuer), "/")
			m.OrganizationID = cmp.Or(m.OrganizationID, o.ID)
			if m.Issuer != r.issuer || m.OrganizationID != o.ID {
				lo.skipped++ // another issuer's, or organization's
				continue
			}
			members = append(members, m)
		}
		return true
	})
	switch {
	case errors.Is(err, orgs.ErrNotFound):
		// Deleted by the provider since its page was listed.
		return listedOrg{org: o, gone: true}, nil, nil
	case err != nil:
		return lo, nil, err
	}
	if before != nil {
		for subject, m := range before.members[o.ID] {
			if !l.has(subject) {
				lo.missing = append(lo.missing, m)
			}
		}
	}
	return lo, members, nil
}

// listAndWrite writes the pages of l as they are listed, and returns the
// errors of the pages that failed. l is complete when none did.
func (r *OrganizationReconciler) listAndWrite(ctx context.Context, report *OrganizationReport, l *orgListing) []error {
	pages, stop := r.pages(ctx, l)
	defer stop()
	return r.writePages(ctx, report, l, func(yield func(orgPage) bool) {
		for p := range pages {
			l.record(p)
			if !yield(p) {
				return
			}
		}
	})
}

// survey lists every page of l without writing any. It returns the pages,
// and whether it kept them all: not when they hold more than r.keep bytes
// (the sweep then lists them again to write them); or the error that
// ended the listing.
func (r *OrganizationReconciler) survey(ctx context.Context, l *orgListing) ([]orgPage, bool, error) {
	pages, stop := r.pages(ctx, l)
	defer stop()
	var kept []orgPage
	n := 0
	for p := range pages {
		if p.err == nil {
			p.err = ctx.Err()
		}
		if p.err != nil {
			return nil, false, fmt.Errorf("listing organizations from %d: %w", p.offset, p.err)
		}
		l.record(p)
		n += pageSize(&p)
		if n > r.keep {
			kept = nil // listed again to write
		} else {
			kept = append(kept, p)
		}
	}
	return kept, n <= r.keep, nil
}

// writePages writes the pages as they come, until they end or the store
// fails maxFailedPages of them in a row, and returns the errors of the
// pages that failed.
func (r *OrganizationReconciler) writePages(ctx context.Context, report *OrganizationReport, l *orgListing, pages iter.Seq[orgPage]) []error {
	var failed []error
	inARow := 0
	lastLog := report.Started
	for p := range pages {
		if p.err == nil {
			p.err = ctx.Err()
		}
		if p.err != nil {
			return append(failed, fmt.Errorf("listing organizations from %d: %w", p.offset, p.err))
		}
		if err := r.writePage(ctx, report, l.gone, p); err != nil {
			failed = append(failed, fmt.Errorf("writing a page of the organizations from %d: %w", p.offset, err))
			if inARow++; ctx.Err() != nil || inARow >= maxFailedPages {
				return failed
			}
		} else {
			inARow = 0
		}
		r.progress(*report)
		if now := r.cfg.Now(); now.Sub(lastLog) >= 10*time.Second {
			lastLog = now
			r.cfg.Logger.InfoContext(ctx, "reconcile organizations: progress", "issuer", report.Issuer, "report", *report)
		}
	}
	return failed
}

// writePage writes a page: of organizations as one batch, but for those
// gone (known gone when the page is written), or of memberships as one
// batch.
func (r *OrganizationReconciler) writePage(ctx context.Context, report *OrganizationReport, gone map[string]struct{}, p orgPage) error {
	var errs []error
	if p.orgs != nil {
		var os []orgs.Organization
		for _, lo := range p.orgs {
			report.Organizations.Listed++
			if lo.skip != "" {
				report.Organizations.Skipped++
				r.cfg.Logger.WarnContext(ctx, "reconcile organizations: skipped an organization that cannot be stored", "issuer", report.Issuer, "why", lo.skip)
				continue
			}
			if _, ok := gone[lo.org.ID]; !ok {
				os = append(os, lo.org)
			}
		}
		if len(os) > 0 {
			errs = append(errs, r.writeOrgs(ctx, report, os))
		}
	}
	for _, lo := range p.listed {
		if lo.skipped > 0 {
			report.Memberships.Listed += lo.skipped
			report.Memberships.Skipped += lo.skipped
			r.cfg.Logger.WarnContext(ctx, "reconcile organizations: skipped memberships of another issuer or organization than the list's", "issuer", report.Issuer, "count", lo.skipped)
		}
	}
	if len(p.members) > 0 {
		report.Memberships.Listed += len(p.members)
		errs = append(errs, r.writeMembers(ctx, report, p.members))
	}
	return errors.Join(errs...)
}

// writeOrgs writes os as one batch.
func (r *OrganizationReconciler) writeOrgs(ctx context.Context, report *OrganizationReport, os []orgs.Organization) error {
	ctx, span := r.tel.page(ctx, len(os), entityOrganization)
	defer span.End()
	s := r.cfg.Syncer
	invalid, err := upsert(ctx, os, &report.Organizations, s.UpsertOrganizations, func(ctx context.Context, o orgs.Organization) (usersync.Outcome, error) {
		_, outcome, err := s.UpsertOrganization(ctx, o)
		return outcome, err
	})
	return r.upserted(ctx, span, kindOrganizations, invalid, err)
}

// writeMembers writes ms as one batch.
func (r *OrganizationReconciler) writeMembers(ctx context.Context, report *OrganizationReport, ms []orgs.Membership) error {
	ctx, span := r.tel.page(ctx, len(ms), entityMembership)
	defer span.End()
	s := r.cfg.Syncer
	invalid, err := upsert(ctx, ms, &report.Memberships, s.UpsertMemberships, func(ctx context.Context, m orgs.Membership) (usersync.Outcome, error) {
		_, outcome, err := s.UpsertMembership(ctx, m)
		return outcome, err
	})
	return r.upserted(ctx, span, kindMemberships, invalid, err)
}

// upserted logs the items of k that upsert skipped as invalid, marks the
// batch's span if the store failed, and returns its error.
func (r *OrganizationReconciler) upserted(ctx context.Context, span trace.Span, k kind, invalid []error, err error) error {
	if len(invalid) > 0 {
		// The errors say which rule an item broke, never its values.
		r.cfg.Logger.WarnContext(ctx, "reconcile organizations: skipped "+k.plural+" that cannot be stored", "issuer", r.issuer, "count", len(invalid), "err", errors.Join(invalid...))
	}
	if err != nil {
		span.SetStatus(codes.Error, "the store failed") // its error may quote data
	}
	return err
}

// upsert writes items as one batch (batch), counting their outcomes in c.
// A batch the store refuses as malformed (one item that fails Validate
// fails it all, and writes nothing) is written again one item at a time
// (one), and the items refused are counted skipped and returned. It
// returns the store's error, if it failed.
func upsert[T any](ctx context.Context, items []T, c *Counts, batch func(context.Context, []T) ([]usersync.Outcome, error), one func(context.Context, T) (usersync.Outcome, error)) (invalid []error, err error) {
	outcomes, err := batch(ctx, items)
	if err == nil {
		for _, o := range outcomes {
			c.add(o)
		}
		return nil, nil
	}
	if !errors.Is(err, usersync.ErrInvalid) || ctx.Err() != nil {
		return nil, err
	}
	for _, item := range items {
		o, err := one(ctx, item)
		switch {
		case errors.Is(err, usersync.ErrInvalid):
			c.Skipped++
			invalid = append(invalid, err)
		case errors.Is(err, usersync.ErrDeleted):
			c.Unchanged++ // a tombstone, or a membership of a deleted user
		case err != nil:
			return invalid, err
		default:
			c.add(o)
		}
	}
	return invalid, nil
}

// guard refuses, as the users' guard does, a list that shares almost
// nothing with the organizations live before the run (ErrForeignList,
// with foreign), or that lacks more of those organizations, or of their
// memberships, than the guard allows (ErrMassDelete, with their IDs in
// the report's Refused).
func (r *OrganizationReconciler) guard(ctx context.Context, report *OrganizationReport, l *orgListing, foreign bool) error {
	missing, shared := l.unlistedOrgs()
	if foreign {
		if err := r.guards.foreign(ctx, r.issuer, kindOrganizations, len(l.before.orgs), shared, len(l.orgs.listed)); err != nil {
			return err
		}
	}
	refusedOrgs, errOrgs := r.guards.massDelete(ctx, r.issuer, kindOrganizations, missing, len(l.before.orgs))
	ids := make([]string, len(l.missing))
	for i, m := range l.missing {
		ids[i] = m.ID
	}
	refusedMembers, errMembers := r.guards.massDelete(ctx, r.issuer, kindMemberships, ids, l.before.nMembers)
	report.Organizations.Refused, report.Memberships.Refused = refusedOrgs, refusedMembers
	return errors.Join(errOrgs, errMembers)
}

// unlistedOrgs returns the IDs of the organizations live before the run
// that the listing lacks or saw go, sorted, and how many it listed.
func (l *orgListing) unlistedOrgs() (missing []string, shared int) {
	for id := range l.before.orgs {
		_, listed := l.orgs.listed[id]
		if listed {
			shared++
		}
		if _, gone := l.gone[id]; gone || !listed {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	return missing, shared
}

// deleteUnlisted deletes, after a complete sweep, the organizations live
// before the run that the listing lacks (or saw go), and the memberships
// live before it that the lists of their organizations lack, each once
// the provider confirms it no longer has it, unless there are more of
// them than the guard allows. One the provider has after all is written
// instead: an organization with its memberships.
func (r *OrganizationReconciler) deleteUnlisted(ctx context.Context, report *OrganizationReport, l *orgListing) error {
	missing, _ := l.unlistedOrgs()
	if len(missing) == 0 && len(l.missing) == 0 {
		return nil
	}
	if err := r.guard(ctx, report, l, false); err != nil {
		return err
	}
	src, s := r.cfg.Source, r.cfg.Syncer
	for _, id := range missing {
		o, err := src.LookupOrganization(ctx, id)
		if err != nil {
			return fmt.Errorf("reconcile organizations: confirming a deletion: %w", err)
		}
		if o != nil {
			if o.ID = cmp.Or(o.ID, id); o.ID != id {
				return fmt.Errorf("reconcile organizations: confirming a deletion: the lookup of one organization answered another")
			}
			// Listed late: store it, as a page would have, with its
			// memberships (none of which it deletes this run).
			if err := r.writeLate(ctx, report, *o); err != nil {
				return fmt.Errorf("reconcile organizations: storing an organization the sweep skipped: %w", err)
			}
			continue
		}
		_, outcome, err := s.DeleteOrganization(ctx, r.issuer, id)
		if err != nil {
			return fmt.Errorf("reconcile organizations: deleting an organization the provider no longer has: %w", err)
		}
		if outcome == usersync.Deleted {
			report.Organizations.Deleted++
		}
	}
	members := slices.SortedFunc(slices.Values(l.missing), func(a, b orgs.Membership) int {
		return cmp.Or(strings.Compare(a.OrganizationID, b.OrganizationID), strings.Compare(a.UserSubject, b.UserSubject))
	})
	for _, stored := range members {
		m, err := src.LookupMembership(ctx, stored.OrganizationID, stored.UserSubject)
		if err != nil {
			return fmt.Errorf("reconcile organizations: confirming the deletion of a membership: %w", err)
		}
		if m != nil {
			m.Issuer = strings.TrimRight(cmp.Or(m.Issuer, r.issuer), "/")
			m.OrganizationID, m.UserSubject = cmp.Or(m.OrganizationID, stored.OrganizationID), cmp.Or(m.UserSubject, stored.UserSubject)
			if m.Issuer != r.issuer || m.OrganizationID != stored.OrganizationID || m.UserSubject != stored.UserSubject {
				return fmt.Errorf("reconcile organizations: confirming the deletion of a membership: the lookup of one membership answered another")
			}
			report.Memberships.Listed++
			if err := r.writeMembers(ctx, report, []orgs.Membership{*m}); err != nil {
				return fmt.Errorf("reconcile organizations: storing a membership the sweep skipped: %w", err)
			}
			continue
		}
		_, outcome, err := s.DeleteMembership(ctx, stored)
		if err != nil {
			return fmt.Errorf("reconcile organizations: deleting a membership the provider no longer has: %w", err)
		}
		if outcome == usersync.Deleted {
			report.Memberships.Deleted++
		}
	}
	return nil
}

// progress calls OnProgress, if set.
func (r *OrganizationReconciler) progress(report OrganizationReport) {
	if r.cfg.OnProgress != nil {
		report.Organizations.Refused = slices.Clone(report.Organizations.Refused)
		report.Memberships.Refused = slices.Clone(report.Memberships.Refused)
		r.cfg.OnProgress(report)
	}
}

// finish completes report, logs its summary and reports it.
func (r *OrganizationReconciler) finish(ctx context.Context, report OrganizationReport, err error) (OrganizationReport, error) {
	report.Finished = r.cfg.Now()
	err = lost(ctx, err)
	r.progress(report)
	if err != nil {
		r.cfg.Logger.ErrorContext(ctx, "reconcile organizations: failed", "issuer", report.Issuer, "report", report, "took", report.Finished.Sub(report.Started), "err", err)
	} else {
		r.cfg.Logger.InfoContext(ctx, "reconcile organizations: done", "issuer", report.Issuer, "report", report, "took", report.Finished.Sub(report.Started))
	}
	return report, err
}

// writeLate writes an organization that a lookup found, though the
// listing did not, with its memberships.
func (r *OrganizationReconciler) writeLate(ctx context.Context, report *OrganizationReport, o orgs.Organization) error {
	lo := r.checkOrg(o)
	if err := r.writePage(ctx, report, nil, orgPage{orgs: []listedOrg{lo}}); err != nil || lo.skip != "" {
		return err
	}
	lo, ms, err := r.listMembers(ctx, nil, lo.org)
	if err != nil || lo.gone {
		return err
	}
	if err := r.writePage(ctx, report, nil, orgPage{listed: []listedOrg{lo}}); err != nil {
		return err
	}
	for batch := range slices.Chunk(ms, r.cfg.PageSize) {
		if err := r.writePage(ctx, report, nil, orgPage{members: batch}); err != nil {
			return err
		}
	}
	return nil
}

// pageSize estimates the memory a listed page holds.
func pageSize(p *orgPage) int {
	n := 0
	for i := range p.orgs {
		o := &p.orgs[i].org
		n += 512 + len(o.Issuer) + len(o.ID) + len(o.Name) + len(o.Slug) + len(o.ImageURL) + len(o.Metadata)
	}
	for i := range p.members {
		m := &p.members[i]
		n += 256 + len(m.Issuer) + len(m.OrganizationID) + len(m.UserSubject) + len(m.ID) + len(m.Role) + len(m.Metadata) + 16*len(m.Permissions)
		for _, perm := range m.Permissions {
			n += len(perm)
		}
	}
	return n + 64*len(p.listed)
}
