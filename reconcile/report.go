package reconcile

import (
	"log/slog"
	"time"
)

// Report tells what a reconcile did, so far (as OnProgress receives it) or
// in all (as Run returns it).
type Report struct {
	// Issuer is the Source's issuer.
	Issuer string
	// Total is how many users the provider said it had at the start.
	Total int
	// Listed counts the users the provider listed.
	Listed int
	// Created, Updated and Unchanged count the listed users by outcome;
	// Unchanged includes users deleted here whom the provider still lists
	// (a tombstone is final). Skipped counts users that could not be
	// stored (a malformed write), which are logged.
	Created, Updated, Unchanged, Skipped int
	// Deleted counts the users tombstoned because the provider no longer
	// has them.
	Deleted int
	// Refused holds the IDs of the users the provider no longer has but
	// that the mass-delete guard kept: nil unless Run failed with
	// ErrMassDelete.
	Refused []string
	// Complete reports that every page was listed and stored without an
	// error, so deletions were considered.
	Complete bool
	// Started and Finished bound the run.
	Started, Finished time.Time
}

// LogValue logs the counts, never the IDs.
func (r Report) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("total", r.Total), slog.Int("listed", r.Listed),
		slog.Int("created", r.Created), slog.Int("updated", r.Updated), slog.Int("unchanged", r.Unchanged),
		slog.Int("skipped", r.Skipped), slog.Int("deleted", r.Deleted), slog.Int("refused", len(r.Refused)),
		slog.Bool("complete", r.Complete),
	)
}
