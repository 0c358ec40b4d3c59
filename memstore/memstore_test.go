package memstore_test

import (
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/usersynctest"
)

func TestConformance(t *testing.T) {
	usersynctest.TestStore(t, func(t *testing.T) usersync.Store { return memstore.New() })
}
