package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
)

// postgresWithSearchPath opens a PostgreSQL pool whose sessions have the
// search_path path.
func postgresWithSearchPath(t *testing.T, path string) *sql.DB {
	t.Helper()
	u, err := url.Parse(os.Getenv("USERSYNC_POSTGRES_DSN"))
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Skip("USERSYNC_POSTGRES_DSN is not a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", path)
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The change feed's trigger functions name the store's own change table,
// whatever the search_path of the session that writes: a writer whose
// search_path lists another schema with a <table>_changes first appends
// its changes to the store's table, and nothing to the other. On a new
// install, and on a database whose functions an older release made
// (found the table through the search_path), which Migrate repairs.
func TestPostgresChangesIgnoreTheWritersSearchPath(t *testing.T) {
	b := backends[1]
	for _, upgrade := range []bool{false, true} {
		name := "new install"
		if upgrade {
			name = "functions made by an older release"
		}
		t.Run(name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			admin, _ := b.Open(t)
			own := testdb.OwnSchema(t, admin, sqlstore.Postgres)   // the store's
			other := testdb.OwnSchema(t, admin, sqlstore.Postgres) // another app's, with a table of the same name
			if _, err := admin.Exec(`CREATE TABLE ` + other + `.users_changes (id BIGSERIAL PRIMARY KEY, seq BIGINT UNIQUE,
				user_id TEXT NOT NULL, user_seq BIGINT NOT NULL, outcome SMALLINT NOT NULL, at TIMESTAMPTZ NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			elsewhere := func() int {
				t.Helper()
				var n int
				if err := admin.QueryRow("SELECT COUNT(*) FROM " + other + ".users_changes").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}

			s, err := sqlstore.New(postgresWithSearchPath(t, own), sqlstore.Config{Dialect: sqlstore.Postgres, Table: "users"})
			if err != nil {
				t.Fatal(err)
			}
			if upgrade {
				if err := s.MigrateTo(ctx, 4); err != nil {
					t.Fatal(err)
				}
				olderChangeFeed(t, postgresWithSearchPath(t, own))
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}

			const iss = "https://issuer.test"
			writers := []struct{ searchPath, table string }{
				{other + "," + own, "users"},            // the store's table found after the other schema
				{other, own + ".users"},                 // a qualified table, the other schema alone in the path
				{other + ",pg_catalog," + own, "users"}, // pg_catalog named after the other schema
			}
			var want []string
			for i, w := range writers {
				ws, err := sqlstore.New(postgresWithSearchPath(t, w.searchPath), sqlstore.Config{Dialect: sqlstore.Postgres, Table: w.table})
				if err != nil {
					t.Fatal(err)
				}
				sub := fmt.Sprint("user-", i)
				write := usersync.Write{ID: "id-" + sub, Issuer: iss, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(iss, sub),
					Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Ada"}, At: time.Now()}
				if _, o, err := ws.Upsert(ctx, write); err != nil || o != usersync.Created {
					t.Fatalf("writer %d: create: %v, %v", i, o, err)
				}
				write.Version, write.Profile.Name = 2, "Ada L."
				if _, o, err := ws.Upsert(ctx, write); err != nil || o != usersync.Updated {
					t.Fatalf("writer %d: update: %v, %v", i, o, err)
				}
				if _, o, err := ws.Delete(ctx, write); err != nil || o != usersync.Deleted {
					t.Fatalf("writer %d: delete: %v, %v", i, o, err)
				}
				want = append(want, "id-"+sub+" created", "id-"+sub+" updated", "id-"+sub+" deleted")
			}
			changes, err := s.Changes(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				got = append(got, c.UserID+" "+c.Outcome.String())
			}
			if !slices.Equal(got, want) {
				t.Errorf("the store's change feed holds %q, want %q", got, want)
			}
			if n := elsewhere(); n != 0 {
				t.Errorf("%d changes went to %s.users_changes, another schema's table", n, other)
			}
			// The functions name the store's table.
			var body string
			if err := admin.QueryRow("SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = $1::regproc", own+".users_record_change").Scan(&body); err != nil {
				t.Fatal(err)
			}
			if want := `INSERT INTO "` + own + `"."users_changes"`; !strings.Contains(body, want) {
				t.Errorf("users_record_change does not say %s: %s", want, body)
			}
		})
	}
}

// olderChangeFeed makes the change feed's functions and triggers again as
// a release before version 5 made them, through db (whose search_path is
// the store's schema): migration 4 as the store's table, unqualified,
// filled it in.
func olderChangeFeed(t *testing.T, db *sql.DB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("schema", "postgres", "004_change_feed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	file := regexp.MustCompile(`\{\{[a-z_:]+\}\}`).ReplaceAllStringFunc(string(b), func(m string) string {
		if _, suffix, ok := strings.Cut(m[2:len(m)-2], ":"); ok {
			return `"users_` + suffix + `"`
		}
		return `"users"`
	})
	if _, err := db.Exec(file); err != nil { // no arguments: one simple query of many statements
		t.Fatal(err)
	}
	var body string
	if err := db.QueryRow(`SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = 'users_record_change'::regproc`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, `INSERT INTO "users_changes"`) {
		t.Fatalf("the older function names its table otherwise: %s", body)
	}
}

// A schema added in front of the search_path after the table was made
// (PostgreSQL's advice against CVE-2018-1058: a schema of the app role's
// own) changes nothing: Migrate finds the table and its migrations where
// they are, runs no migration again, and creates nothing in the new
// schema.
func TestPostgresMigrateAfterASchemaIsAddedInFront(t *testing.T) {
	b := backends[1]
	b.SkipIfUnset(t)
	ctx := context.Background()
	admin, _ := b.Open(t)
	own := testdb.OwnSchema(t, admin, sqlstore.Postgres)
	front := testdb.OwnSchema(t, admin, sqlstore.Postgres)
	s0, err := sqlstore.New(postgresWithSearchPath(t, own), sqlstore.Config{Dialect: sqlstore.Postgres, Table: "users"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s0.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const iss = "https://issuer.test"
	w := usersync.Write{ID: "id-a", Issuer: iss, Subject: "a", TokenIdentifier: usersync.TokenIdentifier(iss, "a"),
		Version: 50, Fields: usersync.FieldEmail, Profile: usersync.Profile{Email: "a@example.com"}, At: time.Now()}
	if _, _, err := s0.Upsert(ctx, w); err != nil {
		t.Fatal(err)
	}
	versions := func() string {
		var v string
		if err := admin.QueryRow("SELECT (SELECT string_agg(m.version::text, ',' ORDER BY m.version) FROM " + own + ".users_migrations m) || ';' || " +
			"(SELECT string_agg(u.email_verified_version::text, ',') FROM " + own + ".users u)").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := versions()

	s, err := sqlstore.New(postgresWithSearchPath(t, front+","+own), sqlstore.Config{Dialect: sqlstore.Postgres, Table: "users"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with a schema in front: %v", err)
	}
	if after := versions(); after != before {
		t.Fatalf("Migrate ran again over the table: %s, before %s", after, before)
	}
	var made int
	if err := admin.QueryRow("SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = $1", front).Scan(&made); err != nil || made != 0 {
		t.Fatalf("%d tables made in the schema in front (%v)", made, err)
	}
}
