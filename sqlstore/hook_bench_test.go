package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// BenchmarkOnWrite measures what a hook costs an Upsert that changes a
// user: the transaction it runs in (BEGIN and COMMIT, and the statements
// in it), with a hook that does nothing, against the same Upsert without
// a hook (the floor).
func BenchmarkOnWrite(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		for _, hooked := range []bool{false, true} {
			name := "without-hook"
			if hooked {
				name = "with-hook"
			}
			b.Run(be.Name+"/"+name, func(b *testing.B) {
				be.SkipIfUnset(b)
				db, table := be.Open(b)
				cfg := sqlstore.Config{Table: table}
				if hooked {
					cfg.OnWrite = func(context.Context, *sql.Tx, usersync.Change) error { return nil }
				}
				s := be.StoreWith(b, db, cfg)
				const users = 64
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					w := hookWrite(fmt.Sprintf("u%d", i%users), usersync.Version(i/users+1))
					if _, o, err := s.Upsert(ctx, w); err != nil || o == usersync.Stale {
						b.Fatalf("Upsert = %v, %v", o, err)
					}
				}
			})
		}
	}
}
