package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// sqliteDialect is SQLite: its writers take turns (one at a time holds
// the database's lock), so the change feed's rowid is in commit order,
// and a run of Migrate is one transaction. Times are Unix milliseconds.
var sqliteDialect = &dialect{
	name:        "sqlite",
	system:      "sqlite",
	quote:       func(s string) string { return `"` + s + `"` },
	placeholder: question,
	bigint:      question,
	timeArg:     millis,
	// = is binary in SQLite.
	emailVerified: "(email_verified AND (email_verified_for IS NULL OR email_verified_for = email))",
	writes:        onConflict,
	// One writer at a time: the reads of a write need no locks.
	orgs: orgDialect{replace: onConflictReplace},
	// 'now' is read once per statement, in whole milliseconds: julianday's
	// double is rounded back to them (a cast alone truncates, and so lands
	// a millisecond early about half the time). The partial unique
	// indexes of an ending's key (migration 7) raise the conflicts that DO
	// NOTHING skips; any other error stands.
	sessions: sessionDialect{
		now:  "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)",
		keep: "ON CONFLICT DO NOTHING",
	},

	// TEXT: substr counts characters.
	leaseCursors: "SELECT name, cursor_pos FROM %s WHERE substr(name, 1, ?) = ?",
	leasePrefix:  func(prefix string) []any { return []any{utf8.RuneCountInString(prefix), prefix} },
	// SQLite numbers a new row after the highest rowid: the newest change
	// stays, so that no Seq is ever handed out twice.
	prune: "DELETE FROM %[1]s WHERE seq <= ? AND at < ? AND seq < (SELECT MAX(seq) FROM %[1]s)",
	// The rowid seq is in commit order: nothing to number.
	sequence: func(*Store, context.Context) error { return nil },

	schemaDir:        "schema/sqlite",
	createMigrations: "CREATE TABLE IF NOT EXISTS %s (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
	// SQLite's names are case-insensitive: "Users" is "users".
	tableExists:    "SELECT COUNT(*) FROM pragma_table_list WHERE name = ? COLLATE NOCASE AND (? = '' OR schema = ? COLLATE NOCASE)",
	lock:           sqliteLock,
	unlock:         sqliteUnlock,
	migrationTable: (*Store).configuredTable,
	apply:          (*Store).applySQLite,
}

// SQLiteDSN returns a modernc.org/sqlite data source name for the database
// file at path with WAL, a 10 s busy timeout, foreign keys on and immediate
// transactions. path may be a plain path or a "file:" URI.
func SQLiteDSN(path string) string {
	const pragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	if !strings.HasPrefix(path, "file:") {
		path = "file:" + path
	}
	if strings.Contains(path, "?") {
		return path + "&" + pragmas
	}
	return path + "?" + pragmas
}

// millis is SQLite's timeArg: Unix milliseconds.
func millis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// sqliteLock serialises Migrate with a transaction that holds the
// database's write lock: the migrations of the run apply in it, and
// commit or roll back together (sqliteUnlock).
func sqliteLock(ctx context.Context, conn *sql.Conn, _ tableName) error {
	_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	return err
}

func sqliteUnlock(ctx context.Context, conn *sql.Conn, _ tableName, failed bool) error {
	end := "COMMIT"
	if failed {
		end = "ROLLBACK"
	}
	_, err := conn.ExecContext(ctx, end)
	return err
}

// applySQLite applies m in the transaction of the lock (sqliteLock), and
// records its version.
func (s *Store) applySQLite(ctx context.Context, conn *sql.Conn, op, mt string, _ tableName, m migration) error {
	for _, st := range m.stmts {
		if err := s.exec(ctx, conn, op, st); err != nil {
			return err
		}
	}
	return s.exec(ctx, conn, op, "INSERT INTO "+mt+" (applied_at, version) VALUES (?, ?)", time.Now().UnixMilli(), m.version)
}

// sqliteErr classifies an error of modernc.org/sqlite by its extended
// code: SQLITE_CONSTRAINT_PRIMARYKEY (1555) and _UNIQUE (2067) are a
// taken key. SQLite asks for nothing to be run again: a writer waits for
// the lock (the busy timeout of SQLiteDSN).
func sqliteErr(err error) (errKind, string) {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		if c := coded.Code(); c == 1555 || c == 2067 {
			return errKeyTaken, ""
		}
	}
	return errOther, ""
}
