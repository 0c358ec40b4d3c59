package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
)

// guard is the mass-delete guard both reconcilers share: how many of the
// items live before a run (users, organizations, memberships) a run may
// delete, and the check that refuses another instance's list.
type guard struct {
	share float64 // the share of the live items a run may delete, 0 to 1
	count int     // how many a run may delete whatever their share, 0 or more
	allow bool    // AllowMassDelete: no limit, and no ErrForeignList
	log   *slog.Logger
}

// newGuard returns the guard of a Config's fields, with their defaults
// (0.10 and 10 for 0; a negative value allows none).
func newGuard(share float64, count int, allow bool, log *slog.Logger) guard {
	if share == 0 {
		share = 0.10
	}
	if count == 0 {
		count = 10
	}
	return guard{share: max(share, 0), count: max(count, 0), allow: allow, log: log}
}

// kind names what a guard counts, in its logs and errors.
type kind struct {
	plural string // "users"
	ids    string // the log attribute of the IDs: "user_ids"
}

var (
	kindUsers         = kind{"users", "user_ids"}
	kindOrganizations = kind{"organizations", "organization_ids"}
	kindMemberships   = kind{"memberships", "membership_ids"}
)

// unlisted returns the items of before that listed lacks, and how many
// of them it has.
func unlisted[V any](before map[string]V, listed map[string]struct{}) (missing map[string]V, shared int) {
	missing = make(map[string]V)
	for key, v := range before {
		if _, ok := listed[key]; ok {
			shared++
		} else {
			missing[key] = v
		}
	}
	return missing, shared
}

// foreign fails with ErrForeignList, unless the guard is lifted, if the
// provider lists fewer than a tenth of the stored items of k that were
// live before the run (stored): listed items in all, shared of them
// stored.
func (g guard) foreign(ctx context.Context, issuer string, k kind, stored, shared, listed int) error {
	if g.allow || shared*10 >= stored { // a tenth or more
		return nil
	}
	g.log.ErrorContext(ctx, "reconcile: refused: the provider lists almost none of the stored "+k.plural+"; is its secret key another instance's?",
		"issuer", issuer, "stored", stored, "listed_of_stored", shared, "listed", listed)
	return fmt.Errorf("%w: it lists %d of the %d stored %s of %s, and %d others: its secret key is likely another instance's than the issuer's (check it, or run with AllowMassDelete if the %s were replaced)",
		ErrForeignList, shared, stored, k.plural, issuer, listed-shared, k.plural)
}

// allows reports whether a run may delete missing of live items.
func (g guard) allows(missing, live int) bool {
	return g.allow || missing <= g.count || float64(missing) <= g.share*float64(live)
}

// massDelete fails with ErrMassDelete, returning the IDs of the items
// sorted, if deleting them (of live items of k) is more than the guard
// allows; ids are the items' IDs, as they are logged.
func (g guard) massDelete(ctx context.Context, issuer string, k kind, ids []string, live int) ([]string, error) {
	if g.allows(len(ids), live) {
		return nil, nil
	}
	refused := slices.Sorted(slices.Values(ids))
	g.log.WarnContext(ctx, "reconcile: refused to delete the "+k.plural+" the provider no longer lists: more than the guard allows; check the provider, then run with AllowMassDelete",
		"issuer", issuer, "would_delete", len(ids), "live", live,
		"max_share", g.share, "max_count", g.count, k.ids, refused[:min(len(refused), 20)])
	return refused, fmt.Errorf("%w: %d of %d %s", ErrMassDelete, len(ids), live, k.plural)
}

// values returns the values of m.
func values[K comparable, V any](m map[K]V) []V {
	return slices.Collect(maps.Values(m))
}
