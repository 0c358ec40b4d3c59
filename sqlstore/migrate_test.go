package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// insertV1 inserts a user row as schema version 1 had it.
func insertV1(t *testing.T, db *sql.DB, b *backend, table, id, subject string, verified bool, v int64) {
	t.Helper()
	ph := func(i int) string {
		if b.Dialect == sqlstore.Postgres {
			return fmt.Sprintf("$%d", i)
		}
		return "?"
	}
	q := fmt.Sprintf(`INSERT INTO %s (id, token_identifier, issuer, subject, name, email, email_verified, picture_url, username, phone_number, metadata,
		name_version, email_version, picture_url_version, username_version, phone_number_version, metadata_version, version, created_at, updated_at, deleted_at)
		VALUES (%s, %s, %s, %s, %s, %s, %s, '', '', '', NULL, %s, %s, 0, 0, 0, 0, %s, 1700000000000, 1700000000000, NULL)`,
		table, ph(1), ph(2), ph(3), ph(4), ph(5), ph(6), ph(7), ph(8), ph(9), ph(10))
	if _, err := db.Exec(q, id, usersync.TokenIdentifier("https://issuer.test", subject), "https://issuer.test", subject,
		"Name "+subject, subject+"@example.com", verified, v, v, v); err != nil {
		t.Fatal(err)
	}
}

// A database made by schema version 1 or 2 upgrades in place: the data
// stays (times too, now SQL times on the servers), email_verified gets the
// version of the email, and on MySQL the keys become byte-for-byte.
func TestMigrateUpgradesOldVersions(t *testing.T) {
	for _, b := range backends {
		for _, from := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/from_%d", b.Name, from), func(t *testing.T) {
				testUpgradeFrom(t, b, from)
			})
		}
	}
}

func testUpgradeFrom(t *testing.T, b *backend, from int) {
	b.SkipIfUnset(t)
	ctx := context.Background()
	db, table := b.Open(t)
	old, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.MigrateTo(ctx, from); err != nil {
		t.Fatal(err)
	}
	insertV1(t, db, b, table, "id-alice", "alice", true, 10)
	insertV1(t, db, b, table, "id-bob", "bob", false, 20)
	insertV1(t, db, b, table, "id-carol", "carol", true, 10)
	if from >= 2 { // version 2's writers keep email_verified's version
		if _, err := db.Exec("UPDATE " + table + " SET email_verified_version = email_version"); err != nil {
			t.Fatal(err)
		}
	}

	s := b.StoreOn(t, db, table) // Migrate to the newest version
	for _, c := range []struct {
		sub, id  string
		verified bool
	}{{"alice", "id-alice", true}, {"bob", "id-bob", false}} {
		u, err := s.GetByTokenIdentifier(ctx, usersync.TokenIdentifier("https://issuer.test", c.sub))
		if err != nil || u.ID != c.id || u.Name != "Name "+c.sub || u.Email != c.sub+"@example.com" || u.EmailVerified != c.verified {
			t.Fatalf("%s after the upgrade: %+v, %v", c.sub, u, err)
		}
		if at := time.UnixMilli(1700000000000); !u.CreatedAt.Equal(at) || !u.UpdatedAt.Equal(at) || !u.DeletedAt.IsZero() || u.ExternalID != "" || !u.LastSignInAt.IsZero() {
			t.Fatalf("%s's times after the upgrade: %+v", c.sub, u)
		}
	}
	// A stored flag belongs to the address stored with it: the same
	// address without a flag keeps it, a new one does not inherit it.
	carol := usersync.Write{ID: "c", Issuer: "https://issuer.test", Subject: "carol", TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", "carol"),
		Version: 12, Fields: usersync.FieldEmail, Profile: usersync.Profile{Email: "carol@example.com"}, At: time.Now()}
	if u, _, err := s.Upsert(ctx, carol); err != nil || !u.EmailVerified {
		t.Fatalf("carol's address again, without a flag: verified %v, %v", u.EmailVerified, err)
	}
	carol.Version, carol.Profile.Email = 13, "carol@new.example"
	if u, _, err := s.Upsert(ctx, carol); err != nil || u.EmailVerified {
		t.Fatalf("carol's new address, without a flag: verified %v, %v", u.EmailVerified, err)
	}
	// email_verified carries the version of the email: an older
	// write of it is stale, a newer one applies.
	w := usersync.Write{ID: "new", Issuer: "https://issuer.test", Subject: "alice", TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", "alice"),
		Version: 9, Fields: usersync.FieldEmailVerified, At: time.Now()}
	if _, o, err := s.Upsert(ctx, w); err != nil || o != usersync.Stale {
		t.Fatalf("older email_verified: %v, %v; want stale", o, err)
	}
	w.Version = 11
	if u, o, err := s.Upsert(ctx, w); err != nil || o != usersync.Updated || u.EmailVerified {
		t.Fatalf("newer email_verified: %v, %v, verified %v", o, err, u.EmailVerified)
	}
	// Keys compare byte for byte after the upgrade, on MySQL too.
	w = usersync.Write{ID: "id-alice ", Issuer: "https://issuer.test", Subject: "alice ", TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", "alice "),
		Version: 30, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Other"}, At: time.Now()}
	if _, o, err := s.Upsert(ctx, w); err != nil || o != usersync.Created {
		t.Fatalf(`"alice " after the upgrade: %v, %v; want a new user`, o, err)
	}
	if u, err := s.Get(ctx, "id-alice"); err != nil || u.Name != "Name alice" {
		t.Fatalf("alice after \"alice \" was stored: %+v, %v", u, err)
	}
	if _, err := s.Get(ctx, "id-bob "); !errors.Is(err, usersync.ErrNotFound) {
		t.Fatalf(`Get("id-bob "): %v, want ErrNotFound`, err)
	}
}

// Migrate refuses a table of its name that it did not make, and creates
// nothing beside it: not even its migrations table. "Users" names that
// table where names fold (SQLite; PostgreSQL's unquoted names; MySQL with
// lower_case_table_names set) and another table where they do not
// (MySQL's default on Linux): Migrate then makes its own and leaves the
// other one as it was.
func TestMigrateRefusesAForeignTable(t *testing.T) {
	for _, b := range backends {
		for _, name := range []string{"users", "Users"} {
			t.Run(b.Name+"/"+name, func(t *testing.T) {
				b.SkipIfUnset(t)
				ctx := context.Background()
				db, table := b.Open(t)
				schema, _, _ := strings.Cut(table, ".")
				if !strings.Contains(table, ".") {
					schema = ""
				}
				foreign := name
				if schema != "" {
					foreign = schema + "." + name
				}
				same := true // foreign names the store's table
				if b.Dialect == sqlstore.MySQL && name != "users" {
					var lower int
					if err := db.QueryRow("SELECT @@lower_case_table_names").Scan(&lower); err != nil {
						t.Fatal(err)
					}
					same = lower != 0
				}
				if _, err := db.Exec("CREATE TABLE " + foreign + " (id INTEGER PRIMARY KEY, email VARCHAR(200) NOT NULL)"); err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec("INSERT INTO " + foreign + " (id, email) VALUES (1, 'ada@example.com')"); err != nil {
					t.Fatal(err)
				}
				before := tables(t, db, b, schema)
				s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
				if err != nil {
					t.Fatal(err)
				}
				err = s.Migrate(ctx)
				if same {
					if !errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), "was not made by usersync") || !strings.Contains(err.Error(), "clerk_users") {
						t.Fatalf("Migrate over a foreign table: %v", err)
					}
					if after := tables(t, db, b, schema); fmt.Sprint(after) != fmt.Sprint(before) {
						t.Fatalf("tables before %v, after the refusal %v", before, after)
					}
				} else {
					if err != nil {
						t.Fatalf("Migrate beside a foreign table %s of another name: %v", name, err)
					}
					if after := tables(t, db, b, schema); !slices.Contains(after, name) || !slices.Contains(after, "users") {
						t.Fatalf("tables after Migrate beside %s: %v", name, after)
					}
				}
				var email string
				if err := db.QueryRow("SELECT email FROM " + foreign + " WHERE id = 1").Scan(&email); err != nil || email != "ada@example.com" {
					t.Fatalf("the foreign table's row after Migrate: %q, %v", email, err)
				}
			})
		}
	}
}

// tables lists the tables of schema ("" for SQLite's main database).
func tables(t *testing.T, db *sql.DB, b *backend, schema string) []string {
	t.Helper()
	q := map[sqlstore.Dialect]string{
		sqlstore.SQLite:   "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
		sqlstore.Postgres: "SELECT table_name FROM information_schema.tables WHERE table_schema = '" + schema + "' ORDER BY table_name",
		sqlstore.MySQL:    "SELECT table_name FROM information_schema.tables WHERE table_schema = '" + schema + "' ORDER BY table_name",
	}[b.Dialect]
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}
