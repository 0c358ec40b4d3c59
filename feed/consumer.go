package feed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/lease"
)

// consumer is one registered handler while the Runner runs.
type consumer struct {
	r    *Runner
	name string
	h    Handler
	all  bool // every entity; else users only
	tel  *consumerTelemetry
}

// run takes the consumer's lease whenever it is free and delivers the feed
// while it holds it, until ctx ends.
func (c *consumer) run(ctx context.Context) {
	cfg := c.r.cfg
	log := cfg.Logger.With("consumer", c.name)
	retry := min(cfg.LeaseTTL/3, time.Second)
	// The claim takes the lease at once from this replica's previous
	// process, with a stable Holder, and logs that.
	claim := lease.NewClaim(cfg.Store, leasePrefix+c.name, cfg.Holder, cfg.LeaseTTL, log)
	waited := false // the last attempt found another holder
	for ctx.Err() == nil {
		held, err := claim.Acquire(ctx)
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "feed: taking the consumer's lease failed; retrying", "err", err)
		}
		if held == nil {
			// Another replica runs this consumer (or the store failed):
			// look again, to take over when its lease expires.
			if err == nil && !waited {
				log.DebugContext(ctx, "feed: another replica runs the consumer; this one stands by to take over")
				waited = true
			}
			sleep(ctx, retry)
			continue
		}
		if waited {
			log.InfoContext(ctx, "feed: took over the consumer from another replica, which let its lease go or stopped renewing it", "position", held.Cursor())
			waited = false
		}
		err = c.deliver(held)
		held.Release()
		if cause := context.Cause(held.Context()); errors.Is(cause, lease.ErrLost) {
			log.WarnContext(ctx, "feed: the consumer lost its lease; another replica goes on from its last saved position", "err", cause)
		} else if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "feed: the consumer stopped; retrying", "err", err)
			sleep(ctx, cfg.PollInterval)
		}
	}
}

// deliver hands the changes after the lease's cursor to the handler, one
// at a time, saving the position after each batch, until the lease's
// context ends.
func (c *consumer) deliver(held *lease.Held) error {
	ctx, cfg := held.Context(), c.r.cfg
	c.tel.hold(true)
	defer c.tel.hold(false)
	cursor := held.Cursor()
	for {
		changes, err := cfg.Store.Changes(ctx, cursor, cfg.BatchSize)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading the feed: %w", err)
		}
		if len(changes) == 0 {
			c.tel.behind(time.Time{})
			if !sleep(ctx, cfg.PollInterval) {
				return nil
			}
			continue
		}
		for _, ch := range changes {
			if ctx.Err() != nil {
				return nil // the lease is lost, or the runner stopping: another replica delivers the rest
			}
			c.tel.behind(ch.At)
			if (c.all || ch.Entity == usersync.EntityUser) && !c.handle(ctx, ch) {
				return nil // stopped mid-change: it is delivered again
			}
			cursor = ch.Seq
			held.SetCursor(cursor) // saved by the next renewal, or below
		}
		if err := held.Save(ctx, cursor); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("saving the position: %w", err)
		}
	}
}

// handle delivers ch until the handler succeeds, parking it after
// MaxAttempts. It reports false if ctx ended first.
func (c *consumer) handle(ctx context.Context, ch usersync.Change) bool {
	cfg := c.r.cfg
	delay := cfg.RetryDelay
	for attempt := 1; ; attempt++ {
		// The attempt's span is in hctx: the handler's work, OnParked and
		// the log lines of the attempt join it.
		hctx, span := c.tel.start(ctx, ch, attempt)
		err := c.call(hctx, ch)
		parked := false
		switch {
		case err == nil || ctx.Err() != nil:
		case attempt < cfg.MaxAttempts:
			cfg.Logger.WarnContext(hctx, "feed: the handler failed; retrying",
				"consumer", c.name, "seq", ch.Seq, "attempt", attempt, "retry_in", delay, "err", err)
		default:
			if perr := c.park(hctx, ch, attempt, err); perr != nil {
				// Not kept: deliver it again rather than lose it.
				err = fmt.Errorf("%w; and keeping the parked change failed: %w", err, perr)
				attempt = cfg.MaxAttempts - 1
				cfg.Logger.WarnContext(hctx, "feed: the handler keeps failing and OnParked failed; retrying", "consumer", c.name, "seq", ch.Seq, "err", err)
			} else {
				parked = true
			}
		}
		c.tel.delivered(hctx, span, err)
		switch {
		case err == nil || parked:
			return true
		case ctx.Err() != nil || !sleep(ctx, delay):
			return false
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// park hands a change the handler keeps failing to OnParked, if set, and
// unless that fails, counts and logs it as parked.
func (c *consumer) park(ctx context.Context, ch usersync.Change, attempts int, err error) error {
	cfg := c.r.cfg
	if cfg.OnParked != nil {
		if perr := cfg.OnParked(ctx, c.name, ch, err); perr != nil {
			return perr
		}
	}
	c.tel.park(ctx)
	cfg.Logger.ErrorContext(ctx, "feed: parked a change the handler keeps failing; the feed goes on without it",
		"consumer", c.name, "seq", ch.Seq, "outcome", ch.Outcome.String(), "attempts", attempts, "err", err)
	return nil
}

// call runs the handler, turning a panic into an error.
func (c *consumer) call(ctx context.Context, ch usersync.Change) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return c.h(ctx, ch)
}
