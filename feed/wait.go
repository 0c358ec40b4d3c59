package feed

import (
	"context"
	"fmt"
	"time"

	"github.com/usersync/usersync"
)

// The polls of WaitCaughtUp: the first after a millisecond, then twice as
// long each time, up to maxWaitPoll apart.
const maxWaitPoll = 50 * time.Millisecond

// WaitCaughtUp waits until the named consumer has passed every change that
// store's feed holds when it is called: until the consumer's position, the
// cursor of its lease, which the replica running it saves after each batch
// its handler has done (or parked), reaches the Seq of the newest of those
// changes. Changes written later are not waited for. It returns nil at
// once if the consumer is there already or the feed is empty; it polls the
// position every few milliseconds, and returns ctx's error, wrapped, if
// ctx ends first (a consumer that no replica runs never catches up), or
// the store's error. A name Handle would refuse fails with an error
// wrapping usersync.ErrInvalid.
//
// It watches the store, not a Runner: it works for a consumer that another
// process runs. Tests wait with it for a handler's effects instead of
// sleeping (usersynctest.WaitForConsumer fails the test instead), and a
// deploy step can wait for a consumer to drain.
func WaitCaughtUp(ctx context.Context, store Store, consumer string) error {
	if !consumerName.MatchString(consumer) {
		return fmt.Errorf("%w: feed: %q is not a consumer's name", usersync.ErrInvalid, consumer)
	}
	name := leasePrefix + consumer
	position := func() (int64, error) {
		cursors, err := store.LeaseCursors(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("feed: reading the position of consumer %q: %w", consumer, err)
		}
		return cursors[name], nil // 0 if it never ran
	}
	at, err := position()
	if err != nil {
		return err
	}
	newest, err := newestSeq(ctx, store, at)
	if err != nil {
		return err
	}
	for delay := time.Millisecond; at < newest; delay = min(2*delay, maxWaitPoll) {
		if !sleep(ctx, delay) {
			return fmt.Errorf("feed: consumer %q is at %d, short of %d: %w", consumer, at, newest, ctx.Err())
		}
		if at, err = position(); err != nil {
			return err
		}
	}
	return nil
}

// newestSeq returns the Seq of the newest change in store's feed, or after
// if there is none after it.
func newestSeq(ctx context.Context, store Store, after int64) (int64, error) {
	const page = 1000
	for {
		changes, err := store.Changes(ctx, after, page)
		if err != nil {
			return 0, fmt.Errorf("feed: reading the feed: %w", err)
		}
		if len(changes) > 0 {
			after = changes[len(changes)-1].Seq
		}
		if len(changes) < page {
			return after, nil
		}
	}
}
