package sqlstore

import (
	"testing"

	"github.com/usersync/usersync"
)

// Every profile field has its columns, once.
func TestProfileColumnsCoverAllFields(t *testing.T) {
	var seen usersync.Fields
	for _, pc := range profileColumns {
		if seen&pc.field != 0 {
			t.Fatalf("field %b listed twice", pc.field)
		}
		seen |= pc.field
	}
	if seen != usersync.AllFields {
		t.Fatalf("columns cover fields %b, want %b", seen, usersync.AllFields)
	}
}
