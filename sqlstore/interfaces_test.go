package sqlstore_test

import (
	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/sqlstore"
)

// The store keeps users, a change feed, leases, organizations and ended
// sessions: it implements the Store interfaces of the usersync, feed,
// lease, orgs and sessions packages.
var (
	_ usersync.Store = (*sqlstore.Store)(nil)
	_ feed.Store     = (*sqlstore.Store)(nil)
	_ lease.Store    = (*sqlstore.Store)(nil)
	_ orgs.Store     = (*sqlstore.Store)(nil)
	_ sessions.Store = (*sqlstore.Store)(nil)
)
