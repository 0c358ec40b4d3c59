// Package lease lets one of several replicas at a time do a job: a
// reconcile, a change-feed consumer.
//
// A lease is a row of the store (see Store) with a name, a holder (any
// string unique to the replica), an expiry, and a cursor: a position the
// job keeps, which stays with the lease from holder to holder. A replica
// that holds a lease renews it before it expires; one that stops (a crash,
// a lost connection) lets it expire, and another replica takes it over with
// its cursor. The replicas' clocks must agree to well within a lease's ttl.
//
// Acquire takes a lease and keeps it while a job runs. A store implements
// Store to let the reconcile and feed packages run on it.
package lease

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"

	"github.com/usersync/usersync"
)

// Store keeps leases. The stores of memstore and sqlstore implement it;
// usersynctest.TestStore checks the rules below for any usersync.Store that
// does.
//
// Its methods follow the rules of usersync.Store's: each takes a context
// first, honours its cancellation, and is atomic on its own, across the
// goroutines and processes sharing the store; errors wrap usersync's
// sentinels where one applies. A name or holder is 1 to 255 bytes of UTF-8
// without NUL characters; any other (an empty name, say) fails with
// usersync.ErrInvalid.
type Store interface {
	// AcquireLease takes the named lease for holder until ttl from now: if
	// no one has held it, its holder let it expire (or released it), or
	// holder holds it already, which renews it. It reports whether holder
	// holds it now, and its cursor (0 for a new lease).
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (cursor int64, ok bool, err error)

	// RenewLease extends holder's lease until ttl from now and sets its
	// cursor, if holder still holds it (no one took it over after it
	// expired); it reports whether it did.
	RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error)

	// ReleaseLease ends holder's lease at once, keeping its cursor. It is a
	// no-op if holder does not hold it.
	ReleaseLease(ctx context.Context, name, holder string) error

	// LeaseCursors returns the cursor of every lease whose name begins
	// with prefix (byte for byte, no wildcards), whoever holds it or held
	// it last, by name: for instance the positions of every change-feed
	// consumer, those of other replicas' code included.
	LeaseCursors(ctx context.Context, prefix string) (map[string]int64, error)
}

// The bounds of the lease settings a job's Config takes.
const (
	minTTL       = 100 * time.Millisecond // renewed every third of it: shorter is busy work
	maxHolderLen = 255                    // what every store keeps
)

// CheckConfig checks the LeaseTTL and Holder settings of a job's Config,
// named config in the error ("reconcile.Config"): ttl is 0 (the job's
// default) or at least 100 ms, holder at most 255 bytes ("" for the
// default, NewHolder). A bad setting fails with an error wrapping
// usersync.ErrInvalid.
func CheckConfig(config string, ttl time.Duration, holder string) error {
	switch {
	case ttl < 0 || ttl > 0 && ttl < minTTL:
		return fmt.Errorf("%w: %s.LeaseTTL is below 100 ms", usersync.ErrInvalid, config)
	case len(holder) > maxHolderLen:
		return fmt.Errorf("%w: %s.Holder is longer than 255 bytes", usersync.ErrInvalid, config)
	}
	return nil
}

// NewHolder returns a new holder name, unique to the call: the host name,
// the process ID and a random suffix. It is the default Holder of a
// replica.
func NewHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%.200s-%d-%s", host, os.Getpid(), rand.Text()[:8])
}
