package memstore_test

import (
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/usersynctest"
)

// The store has a change feed and leases, beside its users.
var (
	_ feed.Store  = (*memstore.Store)(nil)
	_ lease.Store = (*memstore.Store)(nil)
)

func TestConformance(t *testing.T) {
	usersynctest.TestStore(t, func(t *testing.T) usersync.Store { return memstore.New() })
}

// usersOnly is a store of users without a change feed or leases: only the
// methods of usersync.Store.
type usersOnly struct{ usersync.Store }

// TestConformanceOfUsersOnly: TestStore checks the users' rules of a store
// that has no feed and no leases, and skips the others.
func TestConformanceOfUsersOnly(t *testing.T) {
	usersynctest.TestStore(t, func(t *testing.T) usersync.Store { return usersOnly{memstore.New()} })
}
