package reconcile

import (
	"context"
	"fmt"

	"github.com/usersync/usersync"
)

// deleteUnlisted tombstones the live users of the issuer that a complete
// sweep did not list and that the provider confirms it no longer has. A
// candidate must be older than the sweep (a newer one may have been created
// after its page was listed); each is looked up before it is deleted (offset
// paging skips users when others are deleted during the sweep), and one
// that the provider has after all is stored instead.
func (r *Reconciler) deleteUnlisted(ctx context.Context, report *Report, listed map[string]struct{}) error {
	var candidates []usersync.User
	live := 0
	for after := ""; ; {
		users, err := r.cfg.Store.List(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("reconcile: listing the stored users: %w", err)
		}
		for _, u := range users {
			if u.Issuer != report.Issuer {
				continue
			}
			live++
			if _, ok := listed[u.Subject]; !ok && u.CreatedAt.Before(report.Started) {
				candidates = append(candidates, u)
			}
		}
		if len(users) < 1000 {
			break
		}
		after = users[len(users)-1].ID
	}
	if len(candidates) == 0 {
		return nil
	}
	if !r.cfg.AllowMassDelete && len(candidates) > r.cfg.MaxDeleteCount &&
		float64(len(candidates)) > r.cfg.MaxDeleteShare*float64(live) {
		for _, u := range candidates {
			report.Refused = append(report.Refused, u.ID)
		}
		r.cfg.Logger.WarnContext(ctx, "reconcile: refused to delete the users the provider no longer lists: more than the guard allows; check the provider, then run with AllowMassDelete",
			"issuer", report.Issuer, "would_delete", len(candidates), "live", live,
			"max_share", r.cfg.MaxDeleteShare, "max_count", r.cfg.MaxDeleteCount, "user_ids", report.Refused[:min(len(report.Refused), 20)])
		return fmt.Errorf("%w: %d of %d users", ErrMassDelete, len(candidates), live)
	}
	for _, u := range candidates {
		w, err := r.cfg.Source.Lookup(ctx, u.Subject)
		if err != nil {
			return fmt.Errorf("reconcile: confirming a deletion: %w", err)
		}
		if w != nil { // listed late: store it, as a page would have
			if err := r.write(ctx, report, []usersync.Write{*w}); err != nil {
				return fmt.Errorf("reconcile: storing a user the sweep skipped: %w", err)
			}
			report.Listed++
			continue
		}
		if _, _, err := r.cfg.Syncer.Delete(ctx, u.Issuer, u.Subject); err != nil {
			return fmt.Errorf("reconcile: deleting a user the provider no longer has: %w", err)
		}
		report.Deleted++
	}
	return nil
}
