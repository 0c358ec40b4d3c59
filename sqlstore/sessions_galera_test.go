package sqlstore_test

import (
	"context"
	"time"

	"github.com/usersync/usersync/sessions"
)

// roundRobin keeps ended sessions too, so that TestGaleraConformance
// checks the rules of sessions.Store whichever node answers: an ending
// recorded through one node is listed through the next.
var _ sessions.Store = (*roundRobin)(nil)

func (r *roundRobin) EndSessions(ctx context.Context, endings ...sessions.Ending) error {
	return r.node().EndSessions(ctx, endings...)
}

func (r *roundRobin) EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) ([]sessions.Ending, error) {
	return r.node().EndedSessions(ctx, at, seq, limit)
}

func (r *roundRobin) PruneEndedSessions(ctx context.Context, before time.Time) (int64, error) {
	return r.node().PruneEndedSessions(ctx, before)
}
