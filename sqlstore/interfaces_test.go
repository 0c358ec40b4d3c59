package sqlstore_test

import (
	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/sqlstore"
)

// The store keeps users, a change feed and leases: it implements the
// Store interfaces of the usersync, feed and lease packages.
var (
	_ usersync.Store = (*sqlstore.Store)(nil)
	_ feed.Store     = (*sqlstore.Store)(nil)
	_ lease.Store    = (*sqlstore.Store)(nil)
)
