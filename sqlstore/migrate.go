package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"

	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

//go:embed schema
var schemaFS embed.FS

// migration is one numbered schema file.
type migration struct {
	version int
	sql     string   // the file, names filled in
	stmts   []string // its statements, in order
}

// splitStatements splits a migration file into statements: each ends with
// a ";" at the end of a line, except within a block between the lines
// "-- begin statement" and "-- end statement" (a trigger or function body,
// whose own statements end with ";"), which is one statement. Tools that
// run a file whole (psql, most migration tools) need none of this.
func splitStatements(file string) []string {
	var stmts []string
	var cur strings.Builder
	inBlock := false
	flush := func() {
		if st := strings.TrimSpace(cur.String()); st != "" && !isComments(st) {
			stmts = append(stmts, strings.TrimSuffix(st, ";"))
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(file, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "-- begin statement":
			flush()
			inBlock = true
			continue
		case trimmed == "-- end statement":
			inBlock = false
			flush()
			continue
		}
		cur.WriteString(line)
		if !inBlock && strings.HasSuffix(trimmed, ";") {
			flush()
		}
	}
	flush()
	return stmts
}

// isComments reports whether st holds only SQL line comments.
func isComments(st string) bool {
	for _, line := range strings.Split(st, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
			return false
		}
	}
	return true
}

// migrations returns the dialect's migrations in order, with the table name
// filled in.
func (s *Store) migrations() ([]migration, error) {
	entries, err := fs.ReadDir(schemaFS, s.dialect.schemaDir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("usersync/sqlstore: bad migration file name %q", e.Name())
		}
		b, err := schemaFS.ReadFile(path.Join(s.dialect.schemaDir, e.Name()))
		if err != nil {
			return nil, err
		}
		file := s.table.fill(s.dialect, string(b))
		ms = append(ms, migration{version: v, sql: file, stmts: splitStatements(file)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// Schema returns the SQL that Migrate runs for this store's dialect and
// table, for review or for running by hand.
func (s *Store) Schema() string {
	ms, err := s.migrations()
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.sql)
	}
	return b.String()
}

// Migrate creates or updates the users table and the store's other tables
// (<table>_migrations, <table>_leases). It is explicit (New never touches
// the database), idempotent, and safe to run from several replicas at
// once: a database lock serialises runs, and the migrations table records
// the schema version so later releases migrate forward.
//
// A table of the configured name that usersync did not make (one without
// its columns) is refused with an error wrapping usersync.ErrInvalid that
// names it, and nothing is changed: choose another Config.Table.
func (s *Store) Migrate(ctx context.Context) (err error) {
	ctx, op := s.tel.start(ctx, opMigrate)
	defer op.finish(ctx, &err)
	return s.migrate(ctx, 1<<30)
}

// migrate migrates up to version upTo: tests stop at an older version to
// check the upgrade of a database an older release made.
func (s *Store) migrate(ctx context.Context, upTo int) (err error) {
	ms, err := s.migrations()
	if err != nil {
		return s.wrap("migrate", err)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.wrap("migrate", err)
	}
	defer conn.Close()

	h := fnv.New64a()
	h.Write([]byte("usersync:" + s.table.String()))
	key := strconv.FormatInt(int64(h.Sum64()>>1), 10)
	if s.dialect == dialects[MySQL] {
		key = "'usersync:" + s.table.String() + "'"
	}
	lock := s.dialect.lock
	if strings.Contains(lock, "%s") {
		lock = fmt.Sprintf(lock, key)
	}
	if s.dialect.lockReportsSuccess {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, lock).Scan(&got); err != nil {
			return s.wrap("migrate: lock", err)
		}
		if got.Int64 != 1 {
			return s.wrap("migrate: lock", errors.New("timed out waiting for another migration"))
		}
	} else if _, err := conn.ExecContext(ctx, lock); err != nil {
		return s.wrap("migrate: lock", err)
	}
	defer func() {
		unlock := s.dialect.unlock
		if strings.Contains(unlock, "%s") {
			unlock = fmt.Sprintf(unlock, key)
		} else if err != nil { // SQLite: the lock is a transaction
			unlock = "ROLLBACK"
		}
		// The unlock must run even if ctx was canceled.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, unlock); uerr != nil && err == nil {
			err = s.wrap("migrate: unlock", uerr)
		}
	}()

	// Before anything is created: a refusal changes nothing.
	if err := s.refuseForeignTable(ctx, conn); err != nil {
		return err
	}
	mt := s.table.qualified(s.dialect, "migrations")
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(s.dialect.createMigrations, mt)); err != nil {
		return s.wrap("migrate", err)
	}
	// A negative applied_at marks a migration under way (MySQL, below).
	var current int
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM "+mt+" WHERE applied_at > 0").Scan(&current); err != nil {
		return s.wrap("migrate", err)
	}
	mysql := s.dialect == dialects[MySQL]
	for _, m := range ms {
		if m.version <= current || m.version > upTo {
			continue
		}
		op := fmt.Sprintf("migrate to version %d", m.version)
		if mysql {
			done, err := s.claim(ctx, conn, mt, m.version)
			if err != nil {
				return s.wrap(op, err)
			}
			if done {
				continue
			}
		}
		for _, st := range m.stmts {
			if err := s.exec(ctx, conn, op, st); err != nil {
				return err
			}
		}
		record := fmt.Sprintf("INSERT INTO %s (applied_at, version) VALUES (%s, %s)", mt, s.dialect.placeholder(1), s.dialect.placeholder(2))
		if mysql {
			record = "UPDATE " + mt + " SET applied_at = ? WHERE version = ?"
		}
		if err := s.exec(ctx, conn, op, record, time.Now().UnixMilli(), m.version); err != nil {
			return err
		}
	}
	return nil
}

// refuseForeignTable fails if a table of the store's name exists that
// usersync did not make: Migrate would otherwise "succeed" over it
// (CREATE TABLE IF NOT EXISTS) and the app fail at its first request.
func (s *Store) refuseForeignTable(ctx context.Context, conn *sql.Conn) error {
	var n int
	schema := s.table.schema
	if err := conn.QueryRowContext(ctx, s.dialect.tableExists, s.table.base, schema, schema).Scan(&n); err != nil {
		return s.wrap("migrate: look for an existing table", err)
	}
	if n == 0 {
		return nil
	}
	// Ours if it has our columns: a Migrate that stopped between creating
	// the table and recording it.
	probe := "SELECT id, token_identifier, name_version, deleted_at FROM " + s.table.quoted(s.dialect) + " WHERE 1 = 0"
	if rows, err := conn.QueryContext(ctx, probe); err == nil {
		rows.Close()
		return nil
	}
	return fmt.Errorf("%w: usersync/sqlstore: table %s exists and was not made by usersync (it lacks usersync's columns): "+
		"refusing to touch it; give usersync a table of its own, such as sqlstore.Config{Table: %q}",
		usersync.ErrInvalid, s.table, s.table.withBase("clerk_users"))
}

// claimTimeout is how long a claimed migration may stay under way before
// another Migrate takes it over (its claimant died).
const claimTimeout = 10 * time.Minute

// claim takes migration v for this Migrate, on MySQL: GET_LOCK serialises
// the replicas of one server only, and on a Galera cluster replicas on
// other nodes run Migrate at the same time. The first to insert the
// migration's row (with a negative applied_at: minus the time of its
// claim) applies it; the others wait until it is applied, and report done.
func (s *Store) claim(ctx context.Context, conn *sql.Conn, mt string, v int) (done bool, err error) {
	for {
		now := time.Now().UnixMilli()
		_, err := conn.ExecContext(ctx, "INSERT INTO "+mt+" (version, applied_at) VALUES (?, ?)", v, -now)
		if err == nil {
			return false, nil // ours
		}
		if n := mysqlNumber(err); n != 1062 && !retryable(err) {
			return false, err
		}
		var at int64
		err = conn.QueryRowContext(ctx, "SELECT applied_at FROM "+mt+" WHERE version = ?", v).Scan(&at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue // the other claim was rolled back: try again
		case err != nil:
			return false, err
		case at > 0:
			return true, nil
		case now+at > claimTimeout.Milliseconds():
			// Its claimant died: take it over, unless another did.
			res, err := conn.ExecContext(ctx, "UPDATE "+mt+" SET applied_at = ? WHERE version = ? AND applied_at = ?", -now, v, at)
			if err != nil {
				return false, err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return false, nil
			}
			continue
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// exec runs one statement of a migration, again when the database asks.
//
// On MySQL the lock that serialises Migrate (GET_LOCK) is held by one
// server: on a Galera cluster, replicas attached to other nodes can run
// the same migration at the same time. Their DDL is applied in one order
// cluster-wide, and every statement of a migration is idempotent or fails
// as "already there" once another node applied it (a duplicate table,
// column, index or trigger, or the migration's own row): such a failure
// means the work is done.
func (s *Store) exec(ctx context.Context, conn *sql.Conn, op, query string, args ...any) error {
	attempts, err := s.try(ctx, func() error {
		_, err := conn.ExecContext(ctx, query, args...)
		return err
	})
	if err != nil && s.dialect == dialects[MySQL] && alreadyApplied(err) {
		return nil
	}
	if err != nil {
		return s.wrapN(op, attempts, err)
	}
	return nil
}

// alreadyApplied reports a MySQL error that says another node made the
// change first.
func alreadyApplied(err error) bool {
	switch mysqlNumber(err) {
	case 1050, // table exists
		1060, // duplicate column
		1061, // duplicate key name
		1062, // duplicate entry (the migrations table's row)
		1359, // trigger exists
		1826: // duplicate foreign key
		return true
	}
	return false
}
