// Package lease lets one of several replicas at a time do a job: a
// reconcile, a change-feed consumer.
//
// A lease is a row of the store (see Store) with a name, a holder (a name
// of the replica's process: see Holders), an expiry, and a cursor: a
// position the job keeps, which stays with the lease from holder to
// holder. A replica that holds a lease renews it before it expires; one
// that stops (a crash, a lost connection) lets it expire, and another
// replica takes it over with its cursor. The replicas' clocks must agree
// to well within a lease's ttl.
//
// Acquire takes a lease and keeps it while a job runs; a Claim does the
// same for a job that takes one lease again and again. A store implements
// Store to let the reconcile and feed packages run on it.
//
// # Holders
//
// A holder names a replica's process in its leases. By default it is
// unique to the process (NewHolder): a process that is killed leaves its
// leases held until they expire, and its restart, a new process with a new
// holder, waits for that as any other replica does. A holder may instead be
// a stable name of the replica, one that its restarts keep: the pod name of
// a Kubernetes StatefulSet or Deployment (a container restarted in its pod
// keeps it), the host name of a machine that runs one replica. A stable
// holder lets the restarted process take back at once the leases its
// previous process still held, as the store lets a holder renew its own
// lease (a Claim logs the takeover).
//
// Hence the rule: two live processes must never share a holder. The store
// cannot tell them apart: both would hold the same lease and run the same
// job at once. A stable name is safe where the platform runs at most one
// process of a name at a time, and where a stopped process stays stopped:
// one killed (SIGKILL, a crash, the OOM killer) is, one merely paused or
// cut off from the network is not. Within one process, Acquire takes a
// lease under a holder once at a time: a second Runner or Reconciler of
// the same holder in the process waits as another replica would.
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
// replica: its leases outlive a killed process by their ttl (see the
// package doc for a stable holder).
func NewHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%.200s-%d-%s", host, os.Getpid(), rand.Text()[:8])
}
