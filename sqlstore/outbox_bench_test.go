package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// BenchmarkOutbox measures an upsert that changes a user with the change
// feed's outbox (its triggers append a change in the write's transaction)
// and without it (the triggers dropped), on a fresh table of 1,000 users
// each, on every dialect.
func BenchmarkOutbox(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		for _, outbox := range []bool{true, false} {
			name := "with-outbox"
			if !outbox {
				name = "without-outbox"
			}
			b.Run(be.Name+"/"+name, func(b *testing.B) {
				be.SkipIfUnset(b)
				db, table := be.Open(b)
				s := be.StoreOn(b, db, table)
				if !outbox {
					dropTriggers(b, db, be.Dialect, table)
				}
				const n = 1000
				bulkLoad(b, s, n)
				if be.Dialect == sqlstore.SQLite {
					if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				at := time.Now()
				for i := 0; b.Loop(); i++ {
					sub := fmt.Sprintf("user_%09d", (i*7919)%n)
					w := usersync.Write{ID: "new-id", TokenIdentifier: usersync.TokenIdentifier("https://bench.test", sub), Issuer: "https://bench.test", Subject: sub,
						Version: usersync.Version(10 + i), Fields: usersync.FieldName, Profile: usersync.Profile{Name: fmt.Sprint("Name ", i)}, At: at}
					if _, o, err := s.Upsert(ctx, w); err != nil || o != usersync.Updated {
						b.Fatal(o, err)
					}
				}
				b.StopTimer()
				changes, err := s.Changes(ctx, 0, 1)
				if err != nil || outbox != (len(changes) > 0) {
					b.Fatalf("outbox %v, feed %v, %v", outbox, changes, err)
				}
			})
		}
	}
}

// dropTriggers removes the change feed's triggers from table: a store
// without the outbox.
func dropTriggers(b *testing.B, db *sql.DB, d sqlstore.Dialect, table string) {
	schema, base := "", table
	if i := strings.IndexByte(table, '.'); i >= 0 {
		schema, base = table[:i]+".", table[i+1:]
	}
	var stmts []string
	switch d {
	case sqlstore.SQLite:
		stmts = []string{"DROP TRIGGER " + base + "_changes_insert", "DROP TRIGGER " + base + "_changes_update", "DROP TRIGGER " + base + "_changes_count"}
	case sqlstore.Postgres:
		stmts = []string{"DROP TRIGGER " + base + "_changes ON " + table, "DROP TRIGGER " + base + "_changes_count ON " + table}
	case sqlstore.MySQL:
		stmts = []string{"DROP TRIGGER " + schema + base + "_changes_insert", "DROP TRIGGER " + schema + base + "_changes_update", "DROP TRIGGER " + schema + base + "_changes_count"}
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
}
