package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
	"github.com/usersync/usersync/usersynctest"
)

// backend opens databases of one dialect; backends are SQLite, PostgreSQL
// and MySQL.
type backend = testdb.Backend

var backends = testdb.Backends

func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			usersynctest.TestStore(t, func(t *testing.T) usersync.Store { return b.NewStore(t) })
		})
	}
}

func TestNewRejectsBadTableNames(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range []string{"users; DROP TABLE x", `us"ers`, "1users", "users-x", "a.b.users", "auth.", ".users", "auth.1users", "auth users.x", "ユーザー", "a b", "x" + string(make([]byte, 60))} {
		if _, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite, Table: name}); !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("table %q: err = %v, want ErrInvalid", name, err)
		}
	}
	for _, name := range []string{"users", "app_users", "_u2", "auth.users", "app_db.clerk_users"} {
		if _, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite, Table: name}); err != nil {
			t.Errorf("table %q: %v", name, err)
		}
	}
	if _, err := sqlstore.New(nil, sqlstore.Config{Dialect: sqlstore.SQLite}); !errors.Is(err, usersync.ErrInvalid) {
		t.Errorf("nil db: err = %v, want ErrInvalid", err)
	}
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			db, table := b.Open(t)
			other := b.OpenExtra(t, db)
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				wg.Go(func() {
					pool := db
					if i%2 == 1 {
						pool = other
					}
					s, err := sqlstore.New(pool, sqlstore.Config{Dialect: b.Dialect, Table: table})
					if err == nil {
						err = s.Migrate(context.Background())
					}
					errs[i] = err
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("Migrate %d: %v", i, err)
				}
			}
			s := b.StoreOn(t, db, table) // and once more
			files, err := os.ReadDir(filepath.Join("schema", b.Dialect.String()))
			if err != nil {
				t.Fatal(err)
			}
			var n, top int
			if err := db.QueryRow("SELECT COUNT(*), MAX(version) FROM "+table+"_migrations").Scan(&n, &top); err != nil || n != len(files) || top != len(files) {
				t.Fatalf("migrations recorded: %d up to %d, %v; want %d", n, top, err, len(files))
			}
			if c, err := s.Count(context.Background()); err != nil || c != 0 {
				t.Fatalf("Count = %d, %v", c, err)
			}
		})
	}
}

// Schema returns the SQL Migrate runs, with the table's name, and the
// package README prints every migration as it stands.
func TestSchemaIsPrintedAndLinked(t *testing.T) {
	db, _ := sql.Open("sqlite", ":memory:")
	defer db.Close()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []sqlstore.Dialect{sqlstore.SQLite, sqlstore.Postgres, sqlstore.MySQL} {
		s, err := sqlstore.New(db, sqlstore.Config{Dialect: d, Table: "users"})
		if err != nil {
			t.Fatal(err)
		}
		sc := s.Schema()
		if !containsAll(sc, "CREATE TABLE IF NOT EXISTS", "users", "token_identifier", "deleted_at") {
			t.Errorf("%v schema: %s", d, sc)
		}
		files, err := os.ReadDir(filepath.Join("schema", d.String()))
		if err != nil {
			t.Fatal(err)
		}
		quoted := map[sqlstore.Dialect]string{sqlstore.SQLite: `"users"`, sqlstore.Postgres: `"users"`, sqlstore.MySQL: "`users`"}[d]
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join("schema", d.String(), f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			file := placeholders.ReplaceAllStringFunc(string(b), func(m string) string {
				if _, suffix, ok := strings.Cut(m[2:len(m)-2], ":"); ok {
					return strings.Replace(quoted, "users", "users_"+suffix, 1)
				}
				return quoted
			})
			if !strings.Contains(sc, file) {
				t.Errorf("Schema of %v lacks %s", d, f.Name())
			}
		}
		// The README links the files (Schema prints them) rather than
		// pasting a copy that could fall out of date.
		if link := "(schema/" + d.String() + ")"; !strings.Contains(string(readme), link) {
			t.Errorf("README.md does not link %s", link)
		}
	}
	if !strings.Contains(string(readme), "Schema()") {
		t.Error("README.md does not point to Store.Schema()")
	}
}

var placeholders = regexp.MustCompile(`\{\{[a-z_:]+\}\}`)

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
