package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
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

// migrations returns the dialect's migrations in order, with the names
// of table filled in.
func (s *Store) migrations(table tableName) ([]migration, error) {
	entries, err := fs.ReadDir(s.schemaFiles, s.dialect.schemaDir)
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
		b, err := fs.ReadFile(s.schemaFiles, path.Join(s.dialect.schemaDir, e.Name()))
		if err != nil {
			return nil, err
		}
		file := table.fill(s.dialect, string(b))
		ms = append(ms, migration{version: v, sql: file, stmts: splitStatements(file)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// Schema returns the SQL that Migrate runs for this store's dialect and
// table, for review or for running by hand. (On PostgreSQL, Migrate
// qualifies the names of an unqualified table with the schema it is in,
// so that the change feed's functions name their table whatever the
// search_path of the session that writes: to run the SQL by hand, take
// the Schema of a store whose Config.Table names its schema.)
func (s *Store) Schema() string {
	ms, err := s.migrations(s.table)
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
// (<table>_migrations, <table>_leases, the change feed's). It is explicit
// (New never touches the database), idempotent, and safe to run from
// several replicas at once: a database lock serialises runs, and the
// migrations table records the schema version so later releases migrate
// forward.
//
// Each migration is atomic where the database allows it. On PostgreSQL a
// migration and the record of its version commit in one transaction; on
// SQLite a run of Migrate does (the transaction is its lock). A migration
// that fails leaves no part of itself behind, and is not recorded: while it
// runs, other replicas' writes wait for its locks (a write of an older
// release never falls between a new column and the trigger that reads
// it). MySQL and MariaDB cannot: every DDL statement commits on its own.
// There Migrate claims the migration in the migrations table (a replica on
// another Galera node waits for it), takes a statement that fails because
// the very column, index, table or trigger it creates exists as done (a
// migration that stopped midway runs again to its end), and checks the
// columns, indexes and triggers the version needs before it records the
// version: a schema that differs fails with an error wrapping
// usersync.ErrInvalid and ErrSchemaMismatch that names what differs, and
// the version is not recorded.
//
// On PostgreSQL the names inside the change feed's functions and triggers
// are qualified with the table's schema (that of an unqualified table:
// where the search_path finds it, or the first schema of the search_path
// for a new one; migration 5 redefines the functions of a database an
// older release made): a write from a session whose search_path lists
// another schema first still appends its change to the store's own
// change table. Each migration runs with the search_path "pg_catalog,
// <schema>, pg_temp".
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
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.wrap("migrate", err)
	}
	defer conn.Close()

	if err := s.dialect.lock(ctx, conn, s.table); err != nil {
		return s.wrap("migrate: lock", err)
	}
	defer func() {
		// The unlock must run even if ctx was canceled.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if uerr := s.dialect.unlock(uctx, conn, s.table, err != nil); uerr != nil && err == nil {
			err = s.wrap("migrate: unlock", uerr)
		}
	}()

	// Before anything is created: a refusal changes nothing.
	if err := s.refuseForeignTable(ctx, conn); err != nil {
		return err
	}
	table, err := s.dialect.migrationTable(s, ctx, conn)
	if err != nil {
		return err
	}
	ms, err := s.migrations(table)
	if err != nil {
		return s.wrap("migrate", err)
	}
	// Beside the table it records: on PostgreSQL, in the schema the
	// table was found in, not where the session's search_path puts a new
	// table (a schema added in front of the path later, the app role's
	// own, say, would otherwise hold an empty migrations table, and every
	// migration would run again over the existing table).
	mt := table.qualified(s.dialect, "migrations")
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(s.dialect.createMigrations, mt)); err != nil {
		return s.wrap("migrate", err)
	}
	// A negative applied_at marks a migration under way (MySQL's claim).
	var current int
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM "+mt+" WHERE applied_at > 0").Scan(&current); err != nil {
		return s.wrap("migrate", err)
	}
	for _, m := range ms {
		if m.version <= current || m.version > upTo {
			continue
		}
		op := fmt.Sprintf("migrate to version %d", m.version)
		if err := s.dialect.apply(s, ctx, conn, op, mt, table, m); err != nil {
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
		"refusing to touch it; give usersync a table of its own (the store's Table), such as %q",
		usersync.ErrInvalid, s.table, s.table.withBase("clerk_users"))
}

// exec runs one statement of a migration, again when the database asks.
func (s *Store) exec(ctx context.Context, conn *sql.Conn, op, query string, args ...any) error {
	attempts, err := s.try(ctx, func() error {
		_, err := conn.ExecContext(ctx, query, args...)
		return err
	})
	if err != nil {
		return s.wrapN(op, attempts, err)
	}
	return nil
}
