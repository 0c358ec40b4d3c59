package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry"
)

// Store is a usersync.Store over a database/sql database. It is safe for
// concurrent use, by many goroutines and by many processes sharing the
// database.
type Store struct {
	db      *sql.DB
	dialect *dialect
	table   tableName
	sql     statements // built once, by New

	stmts sync.Map   // query -> *sql.Stmt, prepared on first use
	mu    sync.Mutex // serialises preparing

	maxAttempts int
	onWrite     Hook
	retries     atomic.Int64 // statements run again, for tests
	// noInTransaction is set once the database turned out to have no
	// in_transaction variable (MySQL): commit asks it no more.
	noInTransaction atomic.Bool
	tel             *storeTelemetry
	log             *slog.Logger
	schemaFiles     fs.FS // the migrations: the embedded schema, or a test's
}

var _ usersync.Store = (*Store)(nil)

// Config configures a Store. Every field has the default its comment
// gives.
type Config struct {
	// Dialect is the database's SQL flavour. Default SQLite.
	Dialect Dialect
	// Table is the name of the users table. Default "users". It is an
	// identifier ([A-Za-z_][A-Za-z0-9_]{0,47}), or one qualified by its
	// schema (PostgreSQL: "auth.users") or database (MySQL: "app.users"):
	// each part is validated and quoted on its own. The store's other
	// tables and indexes take its name as a prefix (users_migrations,
	// users_leases) in the same schema.
	Table string
	// MaxAttempts is how many times a statement runs at most when the
	// database asks for it to be run again (a serialization failure, a
	// deadlock, a Galera certification conflict). Default 6; 1 turns
	// retries off.
	MaxAttempts int
	// MeterProvider receives usersync_store_operation_duration_seconds, a
	// histogram of every operation (a method of usersync.Store, or
	// Migrate; the retries of its statements included) by operation,
	// outcome and db_system_name, and usersync_store_retries_total;
	// TracerProvider a span per operation called with a span in its
	// context, a child of it (the polls of a feed consumer or a lease,
	// without one, make no root spans). Default: the global providers of
	// go.opentelemetry.io/otel, which do nothing until the app installs
	// the OpenTelemetry SDK.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// OnWrite, if set, runs inside the transaction of every user write
	// that changes something (Created, Updated, Deleted; each such write of
	// UpsertBatch too, in the order of each user's writes): see Hook. With it,
	// Upsert and Delete run in a transaction of their own. Default none.
	OnWrite Hook
	// Logger logs, at warning level, the metadata of a write that the
	// database refused though Write.Validate took it: the write is applied
	// without it, and the log names the field, never its value. Default
	// slog.Default().
	Logger *slog.Logger
}

// New returns a store over db for cfg. It does not touch the database:
// call Migrate once before use. A nil db, an unknown dialect or a malformed
// table name is an error wrapping usersync.ErrInvalid.
func New(db *sql.DB, cfg Config) (*Store, error) {
	if db == nil || !cfg.Dialect.valid() {
		return nil, fmt.Errorf("%w: sqlstore.New needs a database and a known dialect", usersync.ErrInvalid)
	}
	if cfg.Table == "" {
		cfg.Table = "users"
	}
	table, err := parseTableName(cfg.Table)
	if err != nil {
		return nil, err
	}
	if cfg.MaxAttempts < 1 {
		cfg.MaxAttempts = 6
	}
	d := dialects[cfg.Dialect]
	return &Store{db: db, dialect: d, table: table, sql: newStatements(d, table), maxAttempts: cfg.MaxAttempts, onWrite: cfg.OnWrite,
		tel: newStoreTelemetry(cfg.MeterProvider, cfg.TracerProvider, d.system), log: telemetry.Logger(cfg.Logger),
		schemaFiles: schemaFS}, nil
}

// Table returns the name of the users table, as configured, for apps that
// reference it in foreign keys.
func (s *Store) Table() string { return s.table.String() }

// Close releases the prepared statements. It does not close the *sql.DB.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	s.stmts.Range(func(k, st any) bool {
		errs = append(errs, st.(*sql.Stmt).Close())
		s.stmts.Delete(k)
		return true
	})
	return errors.Join(errs...)
}

// stmt returns query prepared, preparing it on first use.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, s.wrap("prepare", err)
	}
	s.stmts.Store(query, st)
	return st, nil
}
