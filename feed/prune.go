package feed

import (
	"context"
	"math"
)

// pruneEvery prunes the feed now and every PruneEvery until ctx ends.
func (r *Runner) pruneEvery(ctx context.Context, consumers map[string]Handler) {
	for {
		if err := r.prune(ctx, consumers); err != nil && ctx.Err() == nil {
			r.cfg.Logger.WarnContext(ctx, "feed: pruning failed; it runs again later", "err", err)
		}
		if !sleep(ctx, r.cfg.PruneEvery) {
			return
		}
	}
}

// prune deletes the changes every consumer has passed that are older than
// Retention, and every change older than MaxAge.
func (r *Runner) prune(ctx context.Context, consumers map[string]Handler) error {
	now := r.cfg.Now()
	passed := int64(math.MaxInt64)
	for name := range consumers {
		cursor, err := r.cfg.Store.LeaseCursor(ctx, leasePrefix+name)
		if err != nil {
			return err
		}
		passed = min(passed, cursor)
	}
	if len(consumers) == 0 {
		passed = 0 // without consumers, only MaxAge prunes
	}
	n, err := r.cfg.Store.PruneChanges(ctx, passed, now.Add(-r.cfg.Retention))
	if err != nil {
		return err
	}
	old, err := r.cfg.Store.PruneChanges(ctx, math.MaxInt64, now.Add(-r.cfg.MaxAge))
	if err != nil {
		return err
	}
	if n+old > 0 {
		r.cfg.Logger.InfoContext(ctx, "feed: pruned changes", "passed", n, "older_than_max_age", old)
	}
	return nil
}
