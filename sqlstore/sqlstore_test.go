package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
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
	"github.com/usersync/usersync/sqlstore"
	"github.com/usersync/usersync/usersynctest"
)

// backend opens databases of one dialect for tests.
type backend struct {
	name    string
	dialect sqlstore.Dialect
	env     string // DSN variable; "" for SQLite, which always runs
	driver  string

	once sync.Once
	db   *sql.DB
	err  error
}

var backends = []*backend{
	{name: "sqlite", dialect: sqlstore.SQLite, driver: "sqlite"},
	{name: "postgres", dialect: sqlstore.Postgres, env: "USERSYNC_POSTGRES_DSN", driver: "pgx"},
	{name: "mysql", dialect: sqlstore.MySQL, env: "USERSYNC_MYSQL_DSN", driver: "mysql"},
}

// open returns a fresh database handle and a table name no other test
// uses. SQLite gets a new file per call. Servers share one pool per test
// binary, and each test gets a schema (PostgreSQL) or database (MySQL) of
// its own, with a random name, dropped when it ends: a test touches
// nothing it did not create. The table is qualified by it: "s_1a2b.users".
func (b *backend) open(t testing.TB) (*sql.DB, string) {
	t.Helper()
	if b.env == "" {
		db, err := sql.Open(b.driver, sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "users.db")))
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db, "users"
	}
	b.skipIfUnset(t)
	dsn := os.Getenv(b.env)
	b.once.Do(func() {
		b.db, b.err = sql.Open(b.driver, dsn)
		if b.err == nil {
			b.err = b.db.Ping()
		}
	})
	if b.err != nil {
		t.Fatalf("%s: %v", b.name, b.err)
	}
	return b.db, ownSchema(t, b.db, b.dialect) + ".users"
}

// ownSchema creates a schema (PostgreSQL) or database (MySQL) with a random
// name and drops it, and only it, when t ends.
func ownSchema(t testing.TB, db *sql.DB, d sqlstore.Dialect) string {
	t.Helper()
	name := "usersync_" + randomHex(5)
	create, drop := "CREATE SCHEMA "+name, "DROP SCHEMA "+name+" CASCADE"
	if d == sqlstore.MySQL {
		create, drop = "CREATE DATABASE "+name, "DROP DATABASE "+name
	}
	if _, err := db.Exec(create); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec(drop); err != nil {
			t.Errorf("drop the test's own %s: %v", name, err)
		}
	})
	return name
}

// skipIfUnset skips t when the backend's server DSN is not set.
func (b *backend) skipIfUnset(t testing.TB) {
	t.Helper()
	if b.env != "" && os.Getenv(b.env) == "" {
		t.Skipf("%s is not set: skipping the %s tests (set it to a DSN of a disposable database to run them)", b.env, b.name)
	}
}

// openExtra opens a second, independent pool on the same database: another
// app replica.
func (b *backend) openExtra(t testing.TB, first *sql.DB) *sql.DB {
	t.Helper()
	var dsn string
	if b.env == "" {
		// SQLite: the same file through a new pool.
		var path string
		if err := first.QueryRow("SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&path); err != nil {
			t.Fatal(err)
		}
		dsn = sqlstore.SQLiteDSN(path)
	} else {
		dsn = os.Getenv(b.env)
	}
	db, err := sql.Open(b.driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newStore opens and migrates a store on a fresh table.
func (b *backend) newStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	db, table := b.open(t)
	return b.storeOn(t, db, table)
}

func (b *backend) storeOn(t testing.TB, db *sql.DB, table string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.dialect, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			b.skipIfUnset(t)
			usersynctest.TestStore(t, func(t *testing.T) usersync.Store { return b.newStore(t) })
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
		t.Run(b.name, func(t *testing.T) {
			db, table := b.open(t)
			other := b.openExtra(t, db)
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				wg.Go(func() {
					pool := db
					if i%2 == 1 {
						pool = other
					}
					s, err := sqlstore.New(pool, sqlstore.Config{Dialect: b.dialect, Table: table})
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
			s := b.storeOn(t, db, table) // and once more
			files, err := os.ReadDir(filepath.Join("schema", b.dialect.String()))
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
func TestSchemaIsPrinted(t *testing.T) {
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
			if !strings.Contains(string(readme), "```sql\n"+file+"```") {
				t.Errorf("README.md does not print %s/%s as it stands", d, f.Name())
			}
		}
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
