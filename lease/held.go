package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
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
	released sync.Once

	key     holdKey // the lease in holding
	tracked bool    // whether it is in holding: its store is comparable
}

// holding is the leases this process holds, from Acquire until Release:
// a process holds a lease under a holder once at a time, so that a lease
// held under a holder that this process does not hold is another
// process's (see Claim).
var holding = struct {
	sync.Mutex
	m map[holdKey]*Held
}{m: map[holdKey]*Held{}}

// holdKey is a lease of a store, under a holder.
type holdKey struct {
	store        any
	name, holder string
}

// newHeld returns the lease of name in store, for holder, not yet held.
func newHeld(store Store, name, holder string, ttl time.Duration, log *slog.Logger) *Held {
	h := &Held{store: store, name: name, holder: holder, ttl: ttl, log: log}
	h.key = holdKey{store: store, name: name, holder: holder}
	// A store of a type that is not comparable (none of this module's)
	// cannot key the map: its leases go untracked.
	h.tracked = reflect.ValueOf(store).Comparable()
	return h
}

// hold registers h in holding, and reports false if this process holds
// its lease already.
func (h *Held) hold() bool {
	if !h.tracked {
		return true
	}
	holding.Lock()
	defer holding.Unlock()
	if holding.m[h.key] != nil {
		return false
	}
	holding.m[h.key] = h
	return true
}

// unhold removes h from holding.
func (h *Held) unhold() {
	if !h.tracked {
		return
	}
	holding.Lock()
	defer holding.Unlock()
	if holding.m[h.key] == h {
		delete(holding.m, h.key)
	}
}

// Acquire takes the named lease of store for holder, or returns nil (and
// no error) if another holder has it, or if this process holds it already
// under holder, until that one's Release (for a store of a comparable
// type, such as a pointer: every store of this module). The lease is
// renewed every third of ttl, each renewal with until a fifth of ttl
// before the lease would expire, counted from the start of the last
// renewal that succeeded; when that moment passes without one, the job's
// context is cancelled with ErrLost, so a job never runs on an expired
// lease (a renewal that hangs cannot keep it going). The returned lease's
// Context is the job's; Release ends it, and must be called, the lease
// lost or not. Failed renewals are logged to log.
//
// A lease that another process still holds under holder (this replica's
// previous process, with a stable holder) is taken at once, as the store
// lets holder renew its own lease; a Claim's Acquire does the same, and
// logs it.
func Acquire(ctx context.Context, store Store, name, holder string, ttl time.Duration, log *slog.Logger) (*Held, error) {
	h := newHeld(store, name, holder, ttl, log)
	if !h.hold() {
		return nil, nil
	}
	acquired := time.Now()
	cursor, ok, err := store.AcquireLease(ctx, name, holder, ttl)
	if err != nil || !ok {
		h.unhold()
		return nil, err
	}
	h.start(ctx, acquired, cursor)
	return h, nil
}

// start begins the job of h, whose lease was acquired at acquired with
// cursor: its context, and the renewals.
func (h *Held) start(ctx context.Context, acquired time.Time, cursor int64) {
	h.ctx, h.stop = context.WithCancelCause(ctx)
	h.done = make(chan struct{})
	h.cursor.Store(cursor)
	go h.keep(ctx, acquired)
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
// another holder to take at once); then this process may acquire it again.
// It is safe to call more than once: the calls after the first do nothing.
func (h *Held) Release() {
	h.released.Do(h.release)
}

// release is Release, once.
func (h *Held) release() {
	defer h.unhold() // after the store's release: a new Acquire here must not overlap it
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
