package reconcile

import (
	"context"
	"fmt"
	"slices"

	"github.com/usersync/usersync"
)

// liveUsers returns the IDs of the issuer's live users, by subject.
func (r *Reconciler) liveUsers(ctx context.Context, issuer string) (map[string]string, error) {
	live := make(map[string]string)
	for after := ""; ; {
		users, err := r.store.List(ctx, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("reconcile: listing the stored users: %w", err)
		}
		for _, u := range users {
			if u.Issuer == issuer {
				live[u.Subject] = u.ID
			}
		}
		if len(users) < 1000 {
			return live, nil
		}
		after = users[len(users)-1].ID
	}
}

// guard refuses, before anything is written, a list that shares almost
// nothing with the users live before the run (ErrForeignList), or that
// lacks more of them than Config.MaxDeleteShare and Config.MaxDeleteCount
// allow (ErrMassDelete, with their IDs in report.Refused). Config.
// AllowMassDelete lifts both.
func (r *Reconciler) guard(ctx context.Context, report *Report, before map[string]string, listed map[string]struct{}) error {
	missing, shared := unlisted(before, listed)
	if err := r.guards.foreign(ctx, report.Issuer, kindUsers, len(before), shared, len(listed)); err != nil {
		return err
	}
	return r.refuseMassDelete(ctx, report, missing, len(before))
}

// refuseMassDelete fails with ErrMassDelete, the IDs in report.Refused,
// if deleting the missing users of the live ones is more than the guard
// allows.
func (r *Reconciler) refuseMassDelete(ctx context.Context, report *Report, missing map[string]string, live int) error {
	refused, err := r.guards.massDelete(ctx, report.Issuer, kindUsers, values(missing), live)
	if err != nil {
		report.Refused = refused
	}
	return err
}

// deleteUnlisted tombstones the users live before the run that a complete
// sweep did not list and that the provider confirms it no longer has,
// unless there are more of them than the guard allows. Each is looked up
// before it is deleted (offset paging skips users when others are deleted
// during the sweep), and one that the provider has after all is stored
// instead. Users stored during the run are never candidates: the provider
// may have created them after their page was listed.
func (r *Reconciler) deleteUnlisted(ctx context.Context, report *Report, before map[string]string, listed map[string]struct{}) error {
	missing, _ := unlisted(before, listed)
	if len(missing) == 0 {
		return nil
	}
	if err := r.refuseMassDelete(ctx, report, missing, len(before)); err != nil {
		return err
	}
	subjects := make([]string, 0, len(missing))
	for subject := range missing {
		subjects = append(subjects, subject)
	}
	slices.Sort(subjects)
	for _, subject := range subjects {
		w, err := r.cfg.Source.Lookup(ctx, subject)
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
		_, outcome, err := r.cfg.Syncer.Delete(ctx, report.Issuer, subject)
		if err != nil {
			return fmt.Errorf("reconcile: deleting a user the provider no longer has: %w", err)
		}
		if outcome == usersync.Deleted {
			report.Deleted++
		}
	}
	return nil
}
