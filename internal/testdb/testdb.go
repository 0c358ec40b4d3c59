// Package testdb opens the databases of usersync's tests: SQLite in a
// temporary file always, PostgreSQL and MySQL/MariaDB when their DSN
// variables are set. Every test on a server gets a schema (PostgreSQL) or
// database (MySQL) of its own with a random name, and drops only that: a
// test never touches data it did not create.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/usersync/usersync/sqlstore"
)

// Backend opens databases of one dialect.
type Backend struct {
	Name    string
	Dialect sqlstore.Dialect
	Env     string // the DSN variable; "" for SQLite, which always runs
	Driver  string

	mu  sync.Mutex
	db  *sql.DB
	err error // a connection that failed for all of ConnectWait
}

// Backends are SQLite, PostgreSQL and MySQL, in that order.
var Backends = []*Backend{
	{Name: "sqlite", Dialect: sqlstore.SQLite, Driver: "sqlite"},
	{Name: "postgres", Dialect: sqlstore.Postgres, Env: "USERSYNC_POSTGRES_DSN", Driver: "pgx"},
	{Name: "mysql", Dialect: sqlstore.MySQL, Env: "USERSYNC_MYSQL_DSN", Driver: "mysql"},
}

// Open returns a database handle and a table name no other test uses.
// SQLite gets a new file per call. Servers share one pool per test binary,
// and the table is qualified by the test's own schema or database:
// "usersync_1a2b3c4d5e.users".
func (b *Backend) Open(t testing.TB) (*sql.DB, string) {
	t.Helper()
	if b.Env == "" {
		db, err := sql.Open(b.Driver, sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "users.db")))
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db, "users"
	}
	b.SkipIfUnset(t)
	b.mu.Lock()
	if b.db == nil && b.err == nil {
		b.db, b.err = Connect(b.Driver, os.Getenv(b.Env))
	}
	db, err := b.db, b.err
	b.mu.Unlock()
	if err != nil {
		t.Fatalf("%s: %v", b.Name, err)
	}
	return db, OwnSchema(t, db, b.Dialect) + ".users"
}

// ConnectWait is how long Connect tries a server before it gives up.
const ConnectWait = 30 * time.Second

// Connect opens a pool on dsn and pings it until it answers, for at most
// ConnectWait: a server that refuses a connection for a moment (a restart,
// a full backlog on a busy machine) fails no test. The error of a server
// that never answered names the DSN's driver, not the DSN, which may hold
// a password.
func Connect(driver, dsn string) (*sql.DB, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(ConnectWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return db, nil
		}
		if time.Now().After(deadline) {
			db.Close()
			return nil, fmt.Errorf("no answer from the %s server in %v: %w", driver, ConnectWait, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// DSN returns a DSN whose default schema (PostgreSQL: search_path) or
// database (MySQL) is one of the test's own, for a program the test runs
// that takes a DSN and unqualified table names: or, for SQLite, a new file.
func (b *Backend) DSN(t testing.TB) string {
	t.Helper()
	if b.Env == "" {
		return filepath.Join(t.TempDir(), "app.db")
	}
	db, _ := b.Open(t) // skips if unset
	schema := OwnSchema(t, db, b.Dialect)
	dsn := os.Getenv(b.Env)
	if b.Dialect == sqlstore.MySQL {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = schema
		return cfg.FormatDSN()
	}
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Fatalf("%s is not a postgres:// URL", b.Env)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// OwnSchema creates a schema (PostgreSQL) or database (MySQL) with a random
// name and drops it, and only it, when t ends.
func OwnSchema(t testing.TB, db *sql.DB, d sqlstore.Dialect) string {
	t.Helper()
	name := "usersync_" + RandomHex(5)
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

// SkipIfUnset skips t when the backend's DSN variable is not set.
func (b *Backend) SkipIfUnset(t testing.TB) {
	t.Helper()
	if b.Env != "" && os.Getenv(b.Env) == "" {
		t.Skipf("%s is not set: skipping the %s tests (set it to a DSN of a database server for tests: each test creates its own schema or database and drops only that)", b.Env, b.Name)
	}
}

// OpenExtra opens a second, independent pool on the same database as
// first: another app replica.
func (b *Backend) OpenExtra(t testing.TB, first *sql.DB) *sql.DB {
	t.Helper()
	var dsn string
	if b.Env == "" {
		// SQLite: the same file through a new pool.
		var path string
		if err := first.QueryRow("SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&path); err != nil {
			t.Fatal(err)
		}
		dsn = sqlstore.SQLiteDSN(path)
	} else {
		dsn = os.Getenv(b.Env)
	}
	db, err := sql.Open(b.Driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// RandomHex returns n random bytes in hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewStore opens and migrates a store on a fresh table.
func (b *Backend) NewStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	db, table := b.Open(t)
	return b.StoreOn(t, db, table)
}

// StoreOn opens and migrates a store on table of db, closed when t ends.
func (b *Backend) StoreOn(t testing.TB, db *sql.DB, table string) *sqlstore.Store {
	t.Helper()
	return b.StoreWith(t, db, sqlstore.Config{Table: table})
}

// StoreWith is StoreOn with cfg, whose Dialect it sets.
func (b *Backend) StoreWith(t testing.TB, db *sql.DB, cfg sqlstore.Config) *sqlstore.Store {
	t.Helper()
	cfg.Dialect = b.Dialect
	s, err := sqlstore.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
