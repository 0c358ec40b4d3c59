package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// On MySQL, whose DDL commits statement by statement, Migrate takes "it
// exists already" as done only for the object the failing statement
// itself creates, and checks the schema a version needs before it records
// the version: a table of the store's name that differs (made by hand, or
// changed) is refused with an error naming the difference, and the
// version is not recorded.
func TestMySQLMigrateRefusesASchemaItDidNotMake(t *testing.T) {
	b := backends[2]
	cases := []struct {
		name     string
		from     int // migrated before prepare
		prepare  []string
		want     []string // in the error
		recorded int      // the version recorded after the refusal
	}{
		{
			name: "a table with usersync's key columns and not the others",
			prepare: []string{`CREATE TABLE {{table}} (id VARCHAR(128) NOT NULL PRIMARY KEY, token_identifier VARCHAR(512) NOT NULL UNIQUE,
				name_version BIGINT NOT NULL, deleted_at BIGINT)`},
			want: []string{"version 1", "column users.email is missing", "column users.metadata is missing"},
		},
		{
			name:     "a column of version 2 added by hand: the keys were never made binary",
			from:     1,
			prepare:  []string{"ALTER TABLE {{table}} ADD COLUMN email_verified_version BIGINT NOT NULL DEFAULT 0"},
			want:     []string{"version 2", "column users.id is varchar, not varbinary", "column users.token_identifier is varchar"},
			recorded: 1,
		},
		{
			name:     "an index of version 3's name on other columns",
			from:     2,
			prepare:  []string{"CREATE INDEX users_external_id ON {{table}} (subject)"},
			want:     []string{"version 3", "index users_external_id of users is (subject), not (issuer,external_id)"},
			recorded: 2,
		},
		{
			name: "a trigger of the change feed's name that does something else",
			from: 3,
			prepare: []string{"CREATE TRIGGER {{schema}}.users_changes_insert AFTER INSERT ON {{table}} FOR EACH ROW SET @usersync_test = NEW.id",
				"CREATE TABLE {{schema}}.users_changes (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY)"},
			want:     []string{"version 4", "trigger users_changes_insert is not the migration's", "column users_changes.user_id is missing"},
			recorded: 3,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			db, table := b.Open(t)
			s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if c.from > 0 {
				if err := s.MigrateTo(ctx, c.from); err != nil {
					t.Fatal(err)
				}
			}
			schema, _, _ := strings.Cut(table, ".")
			for _, q := range c.prepare {
				if _, err := db.Exec(strings.NewReplacer("{{table}}", table, "{{schema}}", schema).Replace(q)); err != nil {
					t.Fatal(err)
				}
			}
			err = s.Migrate(ctx)
			if !errors.Is(err, usersync.ErrInvalid) || !errors.Is(err, sqlstore.ErrSchemaMismatch) {
				t.Fatalf("Migrate over a schema it did not make: %v; want ErrInvalid and ErrSchemaMismatch", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
			if v := migrationRows(t, db, table); v.applied != c.recorded || v.claims != 0 {
				t.Errorf("after the refusal: version %d recorded, %d claims left; want version %d, no claims", v.applied, v.claims, c.recorded)
			}
			// Refused again, at once (the claim was given back): nothing was recorded in between.
			if err := s.Migrate(ctx); !errors.Is(err, sqlstore.ErrSchemaMismatch) {
				t.Fatalf("Migrate again: %v", err)
			}
		})
	}
}

// A MySQL migration that stopped midway (its replica died: some of its
// statements applied, its claim left behind) runs again to its end: each
// statement that created its object already counts as done, and the
// version is recorded once the schema checks.
func TestMySQLMigrateCompletesAMigrationThatStoppedMidway(t *testing.T) {
	b := backends[2]
	for _, c := range []struct {
		name    string
		version int
		prefix  int  // statements of the migration that ran
		noClaim bool // the claim was not left behind
	}{
		{name: "version 2, after its ALTER TABLE", version: 2, prefix: 1},
		{name: "version 3, after its first ALTER TABLE", version: 3, prefix: 2},
		{name: "version 3, after its second ALTER TABLE", version: 3, prefix: 4},
		{name: "version 3, after its index", version: 3, prefix: 5},
		{name: "version 3, after every statement", version: 3, prefix: 6},
		{name: "version 4, after its column", version: 4, prefix: 1},
		{name: "version 4, after one trigger", version: 4, prefix: 5},
		{name: "version 4, after every statement", version: 4, prefix: 7},
		{name: "version 4, after one trigger, its claim gone", version: 4, prefix: 5, noClaim: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			db, table := b.Open(t)
			s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.MigrateTo(ctx, c.version-1); err != nil {
				t.Fatal(err)
			}
			stmts := s.MigrationStatements(c.version)
			if c.prefix > len(stmts) {
				t.Fatalf("migration %d has %d statements", c.version, len(stmts))
			}
			conn, err := db.Conn(ctx) // one session: SET time_zone holds for the rest
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if !c.noClaim {
				// Claimed by a Migrate that died 11 minutes ago.
				if _, err := conn.ExecContext(ctx, "INSERT INTO "+table+"_migrations (version, applied_at) VALUES (?, ?)",
					c.version, -time.Now().Add(-11*time.Minute).UnixMilli()); err != nil {
					t.Fatal(err)
				}
			}
			for _, st := range stmts[:c.prefix] {
				if _, err := conn.ExecContext(ctx, st); err != nil {
					t.Fatalf("%v: %s", err, st)
				}
			}
			conn.Close()

			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("Migrate after a migration stopped midway: %v", err)
			}
			if v := migrationRows(t, db, table); v.applied != latestMySQL(t) || v.claims != 0 {
				t.Fatalf("recorded up to version %d, %d claims left; want %d, none", v.applied, v.claims, latestMySQL(t))
			}
			// The store works, change feed included.
			const iss = "https://issuer.test"
			w := usersync.Write{ID: "id-a", Issuer: iss, Subject: "a", TokenIdentifier: usersync.TokenIdentifier(iss, "a"),
				Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Ada"}, At: time.Now()}
			if _, o, err := s.Upsert(ctx, w); err != nil || o != usersync.Created {
				t.Fatalf("Upsert: %v, %v", o, err)
			}
			if changes, err := s.Changes(ctx, 0, 10); err != nil || len(changes) != 1 || changes[0].Outcome != usersync.Created {
				t.Fatalf("Changes: %+v, %v", changes, err)
			}
		})
	}
}

// versions is what a migrations table holds.
type versions struct{ applied, claims int }

func migrationRows(t *testing.T, db *sql.DB, table string) versions {
	t.Helper()
	var v versions
	if err := db.QueryRow("SELECT COALESCE(MAX(CASE WHEN applied_at > 0 THEN version END), 0), COUNT(CASE WHEN applied_at < 0 THEN 1 END) FROM "+table+"_migrations").
		Scan(&v.applied, &v.claims); err != nil {
		t.Fatal(err)
	}
	return v
}

// latestMySQL returns the version of the last MySQL migration.
func latestMySQL(t *testing.T) int {
	t.Helper()
	files, err := os.ReadDir("schema/mysql")
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}
