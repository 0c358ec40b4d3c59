package feed

import (
	"context"
	"math"
)

// pruneEvery prunes the feed now and every PruneEvery until ctx ends.
func (r *Runner) pruneEvery(ctx context.Context, consumers map[string]registered) {
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
// Retention, and every change older than MaxAge. Every consumer means
// every one that ever ran on the store, registered in this Runner or not
// (a worker's, another version's during a deploy): their positions are
// the leases'.
func (r *Runner) prune(ctx context.Context, consumers map[string]registered) error {
	now := r.cfg.Now()
	positions, err := r.cfg.Store.LeaseCursors(ctx, leasePrefix)
	if err != nil {
		return err
	}
	passed := int64(math.MaxInt64)
	for name := range consumers {
		passed = min(passed, positions[leasePrefix+name]) // 0 if it never ran
	}
	for _, cursor := range positions {
		passed = min(passed, cursor)
	}
	if passed == math.MaxInt64 {
		passed = 0 // no consumer at all: only MaxAge prunes
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
