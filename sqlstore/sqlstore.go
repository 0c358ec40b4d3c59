package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	sql     statements

	stmts sync.Map   // query -> *sql.Stmt, prepared on first use
	mu    sync.Mutex // serialises preparing

	maxAttempts int
	retries     atomic.Int64 // statements run again, for tests
	tel         *storeTelemetry
	log         *slog.Logger
	schemaFiles fs.FS // the migrations: the embedded schema, or a test's
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
	return &Store{db: db, dialect: d, table: table, sql: d.statements(table), maxAttempts: cfg.MaxAttempts,
		tel: newStoreTelemetry(cfg.MeterProvider, cfg.TracerProvider, cfg.Dialect), log: telemetry.Logger(cfg.Logger),
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

// queryUser runs a prepared single-row query and returns the row, live or
// tombstone.
func (s *Store) queryUser(ctx context.Context, op, query string, args ...any) (usersync.User, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return usersync.User{}, err
	}
	var u usersync.User
	attempts, err := s.try(ctx, func() (err error) {
		u, err = scanUser(st.QueryRowContext(ctx, args...))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return usersync.User{}, usersync.ErrNotFound
	}
	if err != nil {
		return usersync.User{}, s.wrapN(op, attempts, err)
	}
	return u, nil
}

// liveUser runs queryUser and fails with ErrDeleted for a tombstone.
func (s *Store) liveUser(ctx context.Context, op, query string, key string) (usersync.User, error) {
	if !storable(key) {
		if err := ctx.Err(); err != nil {
			return usersync.User{}, err
		}
		return usersync.User{}, usersync.ErrNotFound
	}
	u, err := s.queryUser(ctx, op, query, key)
	if err == nil && !u.DeletedAt.IsZero() {
		return usersync.User{}, usersync.ErrDeleted
	}
	return u, err
}

// get implements the Get of usersync.Store.
func (s *Store) get(ctx context.Context, id string) (usersync.User, error) {
	return s.liveUser(ctx, "get", s.sql.getByID, id)
}

// getByExternalID implements the GetByExternalID of usersync.Store.
func (s *Store) getByExternalID(ctx context.Context, issuer, externalID string) (usersync.User, error) {
	if externalID == "" || !storable(issuer) || !storable(externalID) {
		if err := ctx.Err(); err != nil {
			return usersync.User{}, err
		}
		return usersync.User{}, usersync.ErrNotFound
	}
	return s.queryUser(ctx, "get by external ID", s.sql.getByExternalID, issuer, externalID)
}

// getByTokenIdentifier implements the GetByTokenIdentifier of usersync.Store.
func (s *Store) getByTokenIdentifier(ctx context.Context, tokenIdentifier string) (usersync.User, error) {
	return s.liveUser(ctx, "get by token identifier", s.sql.getByToken, tokenIdentifier)
}

// maxInList bounds the bind parameters of one GetMany query, well under
// every dialect's limit.
const maxInList = 1000

// getMany implements the GetMany of usersync.Store. Up to 1,000 distinct IDs cost one
// query; more are fetched in chunks of 1,000.
func (s *Store) getMany(ctx context.Context, ids []string) (map[string]usersync.User, error) {
	seen := make(map[string]struct{}, len(ids))
	uniq := make([]any, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok && storable(id) {
			seen[id] = struct{}{}
			uniq = append(uniq, id)
		}
	}
	out := make(map[string]usersync.User, len(uniq))
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for len(uniq) > 0 {
		chunk := uniq[:min(len(uniq), maxInList)]
		uniq = uniq[len(chunk):]
		var q strings.Builder
		q.WriteString(s.sql.getManyPrefix)
		for i := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(s.dialect.placeholder(i + 1))
		}
		q.WriteByte(')')
		attempts, err := s.try(ctx, func() error {
			rows, err := s.db.QueryContext(ctx, q.String(), chunk...)
			if err != nil {
				return err
			}
			for rows.Next() {
				u, err := scanUser(rows)
				if err != nil {
					rows.Close()
					return err
				}
				out[u.ID] = u
			}
			return errors.Join(rows.Err(), rows.Close())
		})
		if err != nil {
			return nil, s.wrapN("get many", attempts, err)
		}
	}
	return out, nil
}

// upsert implements the Upsert of usersync.Store in one statement.
func (s *Store) upsert(ctx context.Context, w usersync.Write) (usersync.User, usersync.Outcome, error) {
	if err := w.Validate(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	args := insertArgs(make([]any, 0, len(insertColumns)), s.dialect, &w, w.Fields, w.At, w.At, time.Time{})
	u, outcome, err := s.write(ctx, "upsert", s.sql.upsert, &w, usersync.Updated, args)
	if err != nil && w.Profile.Metadata != nil {
		if r := refused(err); r != nil {
			u, outcome, err = s.upsertWithoutMetadata(ctx, w, err, r)
		}
	}
	if err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	if !u.DeletedAt.IsZero() {
		return usersync.User{}, usersync.Stale, usersync.ErrDeleted
	}
	return u, outcome, nil
}

// upsertWithoutMetadata runs w again without its metadata, after the
// database refused a value of it (err, refusal r): Validate vouches for
// every other value, and for the metadata every database it knows of
// holds, but cannot foresee every database's rules. As the
// Syncer does with a field no store can hold, the field is dropped (its
// stored value and version stay; a new user gets none) and the rest of
// the write applies, with a warning that names the field, never its
// value. If the database refuses the write without it too, err is
// returned. It runs only after a refusal: the normal path costs nothing.
func (s *Store) upsertWithoutMetadata(ctx context.Context, w usersync.Write, err error, r *refusal) (usersync.User, usersync.Outcome, error) {
	carried := w.Fields&usersync.FieldMetadata != 0
	w.Fields &^= usersync.FieldMetadata
	w.Profile.Metadata = nil
	args := insertArgs(make([]any, 0, len(insertColumns)), s.dialect, &w, w.Fields, w.At, w.At, time.Time{})
	u, outcome, err2 := s.write(ctx, "upsert", s.sql.upsert, &w, usersync.Updated, args)
	if refused(err2) != nil {
		return usersync.User{}, usersync.Stale, err // not the metadata's doing
	}
	if err2 == nil {
		s.log.WarnContext(ctx, "usersync/sqlstore: the database refused the metadata of a write; dropped it and applied the rest",
			"field", "metadata", "carried", carried, "table", s.table.String(), "code", r.code)
	}
	return u, outcome, err2
}

// delete implements the Delete of usersync.Store in one statement.
func (s *Store) delete(ctx context.Context, w usersync.Write) (usersync.User, usersync.Outcome, error) {
	if err := w.Validate(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	t := usersync.Write{ID: w.ID, TokenIdentifier: w.TokenIdentifier, Issuer: w.Issuer, Subject: w.Subject}
	args := insertArgs(make([]any, 0, len(insertColumns)), s.dialect, &t, 0, w.At, w.At, w.At)
	u, outcome, err := s.write(ctx, "delete", s.sql.tombstone, &w, usersync.Deleted, args)
	if outcome == usersync.Created {
		outcome = usersync.Deleted // a tombstone for a key never seen
	}
	return u, outcome, err
}

// write runs the insert-or-update statement of w. It reports Created when
// the row is new, changed when an existing row changed, and Stale with the
// stored row otherwise.
func (s *Store) write(ctx context.Context, op, query string, w *usersync.Write, changed usersync.Outcome, args []any) (usersync.User, usersync.Outcome, error) {
	id, ti := w.ID, w.TokenIdentifier
	st, err := s.stmt(ctx, query)
	if err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	if s.dialect.returning {
		var u usersync.User
		var changes int64
		attempts, err := s.try(ctx, func() (err error) {
			u, changes, err = scanRow(st.QueryRowContext(ctx, args...))
			return err
		})
		switch {
		case err == nil && changes == 1: // the insert: an update raises it above 1
			return u, usersync.Created, nil
		case err == nil:
			return u, changed, nil
		case !errors.Is(err, sql.ErrNoRows):
			return usersync.User{}, usersync.Stale, s.wrapN(op, attempts, err)
		}
		// The row exists and the WHERE clause left it alone.
		u, err = s.queryUser(ctx, op, s.sql.getByToken, ti)
		return u, usersync.Stale, err
	}
	// The statement and the read-back retry on their own, so that a write
	// that committed is never run again (and reported Stale).
	var res sql.Result
	attempts, err := s.try(ctx, func() (err error) {
		res, err = st.ExecContext(ctx, args...)
		return err
	})
	if err != nil {
		return usersync.User{}, usersync.Stale, s.wrapN(op, attempts, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return usersync.User{}, usersync.Stale, s.wrap(op, err)
	}
	u, err := s.queryUser(ctx, op, s.sql.getByToken, ti)
	if errors.Is(err, usersync.ErrNotFound) {
		// Nothing inserted and no row of ours: the new ID belongs to
		// another user (whose row the guarded update left alone).
		return usersync.User{}, usersync.Stale, fmt.Errorf("%w: ID %q is taken", usersync.ErrInvalid, id)
	}
	if err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	// MySQL counts 1 for an insert, 2 for a change and 0 for no change (1
	// with clientFoundRows=true), so "created" is told by the row.
	switch {
	case n >= 1 && created(&u, w):
		return u, usersync.Created, nil
	case n == 2:
		return u, changed, nil
	}
	return u, usersync.Stale, nil
}

// created reports whether u, as read back after w (MySQL), was created by
// w: it has w's ID and was created at w's time (to the store's
// millisecond). A write that updates may carry the ID of the user it
// updates; only a retry of the very write that created the user could
// also carry its time.
func created(u *usersync.User, w *usersync.Write) bool {
	d := u.CreatedAt.Sub(w.At)
	return u.ID == w.ID && d > -time.Millisecond && d < time.Millisecond
}

// list implements the List of usersync.Store with keyset pagination on the primary key.
func (s *Store) list(ctx context.Context, after string, limit int) ([]usersync.User, error) {
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d", usersync.ErrInvalid, limit)
	}
	if !storable(after) {
		return nil, fmt.Errorf("%w: after is not an ID", usersync.ErrInvalid)
	}
	st, err := s.stmt(ctx, s.sql.list)
	if err != nil {
		return nil, err
	}
	var out []usersync.User
	attempts, err := s.try(ctx, func() error {
		out = out[:0]
		rows, err := st.QueryContext(ctx, after, limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, u)
		}
		return errors.Join(rows.Err(), rows.Close())
	})
	if err != nil {
		return nil, s.wrapN("list", attempts, err)
	}
	return out, nil
}

// count implements the Count of usersync.Store.
func (s *Store) count(ctx context.Context) (int, error) {
	st, err := s.stmt(ctx, s.sql.count)
	if err != nil {
		return 0, err
	}
	var n int
	attempts, err := s.try(ctx, func() error { return st.QueryRowContext(ctx).Scan(&n) })
	if err != nil {
		return 0, s.wrapN("count", attempts, err)
	}
	return n, nil
}
