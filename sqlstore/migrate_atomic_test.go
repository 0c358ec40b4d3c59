package sqlstore_test

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/usersync/usersync/sqlstore"
)

// A migration that fails midway leaves nothing of itself behind, and is
// not recorded, where DDL is transactional (SQLite, PostgreSQL): a write
// of another replica never meets half of it (migration 4: a new column
// without the trigger that reads it). Run again once it can succeed, it
// applies whole.
func TestAFailedMigrationLeavesNothing(t *testing.T) {
	const failing = `-- A table, a column, then a failure.
CREATE TABLE {{qualified:half}} (x INTEGER);
ALTER TABLE {{table}} ADD COLUMN half_done INTEGER;
INSERT INTO {{qualified:no_such_table}} (x) VALUES (1);
`
	const fixed = `CREATE TABLE {{qualified:half}} (x INTEGER);
ALTER TABLE {{table}} ADD COLUMN half_done INTEGER;
`
	for _, b := range backends[:2] { // SQLite and PostgreSQL
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			db, table := b.Open(t)
			b.StoreOn(t, db, table) // every shipped migration
			schema := ""
			if s, _, ok := strings.Cut(table, "."); ok {
				schema = s
			}
			before := tables(t, db, b, schema)

			s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.AddMigration("099_fails.sql", failing); err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(ctx); err == nil {
				t.Fatal("a failing migration succeeded")
			}
			if after := tables(t, db, b, schema); !slices.Equal(after, before) {
				t.Errorf("tables before the failed migration %v, after %v", before, after)
			}
			if hasColumn(db, table, "half_done") {
				t.Error("the failed migration's column is there")
			}
			if v := recorded(t, db, table, 99); v {
				t.Error("the failed migration is recorded")
			}

			s, err = sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.AddMigration("099_fixed.sql", fixed); err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if !hasColumn(db, table, "half_done") || !recorded(t, db, table, 99) {
				t.Error("the fixed migration did not apply")
			}
		})
	}
}

// hasColumn reports whether table has the column.
func hasColumn(db *sql.DB, table, column string) bool {
	rows, err := db.Query("SELECT " + column + " FROM " + table + " WHERE 1 = 0")
	if err != nil {
		return false
	}
	rows.Close()
	return true
}

// recorded reports whether the migrations table of table records version
// v as applied.
func recorded(t *testing.T, db *sql.DB, table string, v int) bool {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table + "_migrations WHERE version = " + strconv.Itoa(v) + " AND applied_at > 0").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}
