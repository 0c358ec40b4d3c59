package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrLost is the cause of a held lease's context when the lease was taken
// over, or could not be renewed before it would expire.
var ErrLost = errors.New("the lease was lost")

// Held is a lease while a job holds it.
type Held struct {
	store        Store
	name, holder string
	ttl          time.Duration
	log          *slog.Logger

	ctx    context.Context // the job's: cancelled with ErrLost when the lease is lost
	stop   context.CancelCauseFunc
	done   chan struct{}
	cursor atomic.Int64
	// renewing serializes the writes of the cursor, so that a renewal
	// that read an older cursor never lands after a Save of a newer one.
	renewing sync.Mutex
}

// Acquire takes the named lease of store for holder, or returns nil (and
// no error) if another holder has it. The lease is renewed every third of
// ttl, each renewal with until a fifth of ttl before the lease would
// expire, counted from the start of the last renewal that succeeded; when
// that moment passes without one, the job's context is cancelled with
// ErrLost, so a job never runs on an expired lease (a renewal that hangs
// cannot keep it going). The returned lease's Context is the job's;
// Release ends it. Failed renewals are logged to log.
func Acquire(ctx context.Context, store Store, name, holder string, ttl time.Duration, log *slog.Logger) (*Held, error) {
	acquired := time.Now()
	cursor, ok, err := store.AcquireLease(ctx, name, holder, ttl)
	if err != nil || !ok {
		return nil, err
	}
	jobCtx, stop := context.WithCancelCause(ctx)
	h := &Held{store: store, name: name, holder: holder, ttl: ttl, log: log, ctx: jobCtx, stop: stop, done: make(chan struct{})}
	h.cursor.Store(cursor)
	go h.keep(ctx, acquired)
	return h, nil
}

// Context returns the job's context: cancelled with ErrLost when the lease
// is lost, and when Release is called.
func (h *Held) Context() context.Context { return h.ctx }

// Cursor returns the lease's cursor: as acquired, or as last set.
func (h *Held) Cursor() int64 { return h.cursor.Load() }

// SetCursor sets the cursor that the next renewal saves.
func (h *Held) SetCursor(c int64) { h.cursor.Store(c) }

// Save renews the lease now with cursor c, and reports whether it still
// held it.
func (h *Held) Save(ctx context.Context, c int64) error {
	h.renewing.Lock()
	h.cursor.Store(c)
	ok, err := h.store.RenewLease(ctx, h.name, h.holder, h.ttl, c)
	h.renewing.Unlock()
	switch {
	case err != nil:
		return err
	case !ok:
		err := fmt.Errorf("%w: %s was taken over", ErrLost, h.name)
		h.stop(err)
		return err
	}
	return nil
}

func (h *Held) keep(parent context.Context, acquired time.Time) {
	defer close(h.done)
	margin := h.ttl / 5
	deadline := acquired.Add(h.ttl - margin) // the job must be over by then, unless renewed
	tick := time.NewTicker(h.ttl / 3)
	defer tick.Stop()
	lost := time.NewTimer(time.Until(deadline))
	defer lost.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-lost.C:
			h.stop(fmt.Errorf("%w: %s could not be renewed before it expires", ErrLost, h.name))
			return
		case <-tick.C:
		}
		start := time.Now()
		rctx, cancel := context.WithDeadline(parent, deadline)
		h.renewing.Lock()
		ok, err := h.store.RenewLease(rctx, h.name, h.holder, h.ttl, h.cursor.Load())
		h.renewing.Unlock()
		cancel()
		switch {
		case err == nil && ok:
			deadline = start.Add(h.ttl - margin)
			lost.Reset(time.Until(deadline))
		case err == nil:
			h.stop(fmt.Errorf("%w: %s was taken over", ErrLost, h.name))
			return
		default:
			h.log.WarnContext(parent, "usersync: renewing a lease failed; retrying", "lease", h.name, "err", err)
		}
	}
}

// Release stops the renewals, saves the cursor and lets the lease go (for
// another holder to take at once). It is safe to call more than once.
func (h *Held) Release() {
	h.stop(nil)
	<-h.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), h.ttl)
	defer cancel()
	if !errors.Is(context.Cause(h.ctx), ErrLost) { // ended, not lost: ours to save and release
		h.renewing.Lock()
		defer h.renewing.Unlock()
		if _, err := h.store.RenewLease(ctx, h.name, h.holder, h.ttl, h.cursor.Load()); err != nil {
			h.log.WarnContext(ctx, "usersync: saving a lease's cursor failed", "lease", h.name, "err", err)
		}
	}
	if err := h.store.ReleaseLease(ctx, h.name, h.holder); err != nil {
		h.log.WarnContext(ctx, "usersync: releasing a lease failed; it expires", "lease", h.name, "err", err)
	}
}
