package lease

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Claim is a holder's standing claim to one named lease of a store: what a
// job that takes the same lease again and again acquires it through (a
// change-feed consumer, a reconcile). Its Acquire is Acquire's, but the
// first one in a process also finds out whether the lease is still held
// under holder by another process: with a stable holder (see the package
// doc), the replica's previous process, which stopped without letting it
// go. It takes such a lease over at once, as Acquire does, and logs the
// takeover at Info.
//
// A Claim is safe for concurrent use; of concurrent Acquires, at most one
// returns the lease (for a store of a comparable type, such as a pointer:
// every store of this module).
type Claim struct {
	store        Store
	name, holder string
	ttl          time.Duration
	log          *slog.Logger

	mu      sync.Mutex
	checked bool // whether an Acquire found out who held the lease
}

// NewClaim returns the Claim of holder to the named lease of store, which
// its Acquire takes with ttl, logging to log as Acquire does.
func NewClaim(store Store, name, holder string, ttl time.Duration, log *slog.Logger) *Claim {
	return &Claim{store: store, name: name, holder: holder, ttl: ttl, log: log}
}

// probeTTL is the ttl of the lease of a Claim's probe: it is released at
// once, or else expires soon.
const probeTTL = minTTL

// Acquire takes the lease, as Acquire does: it returns nil (and no error)
// if another holder has it, or if this process holds it already under the
// Claim's holder. Until an Acquire has found out who held the lease, it
// first asks the store with a holder of its own (a probe, released at once
// if it got the lease): if that holder cannot take the lease but the
// Claim's holder can, another process held it under the Claim's holder,
// and the takeover is logged at Info.
func (c *Claim) Acquire(ctx context.Context) (*Held, error) {
	c.mu.Lock()
	checked := c.checked
	c.mu.Unlock()
	if checked {
		return Acquire(ctx, c.store, c.name, c.holder, c.ttl, c.log)
	}
	h := newHeld(c.store, c.name, c.holder, c.ttl, c.log)
	if !h.hold() {
		return nil, nil
	}
	probe := NewHolder() + "-probe"
	_, free, err := c.store.AcquireLease(ctx, c.name, probe, probeTTL)
	if err == nil && free {
		err = c.store.ReleaseLease(ctx, c.name, probe)
	}
	if err != nil {
		h.unhold()
		return nil, err
	}
	acquired := time.Now()
	cursor, ok, err := c.store.AcquireLease(ctx, c.name, c.holder, c.ttl)
	if err != nil {
		h.unhold()
		return nil, err
	}
	c.mu.Lock()
	c.checked = true
	c.mu.Unlock()
	if !ok {
		h.unhold()
		return nil, nil
	}
	if !free {
		// Held, and not by another holder: by another process under ours.
		// (Or by another holder that let it go between the two calls: a
		// takeover still.)
		c.log.InfoContext(ctx, "lease: took over a lease that another process held under this holder: this replica's previous process, which stopped without letting it go",
			"lease", c.name, "holder", c.holder, "cursor", cursor)
	}
	h.start(ctx, acquired, cursor)
	return h, nil
}
