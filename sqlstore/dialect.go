package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

// A Dialect is the SQL flavour of a database.
type Dialect int

const (
	// SQLite is SQLite 3.35 or later (tested with modernc.org/sqlite).
	SQLite Dialect = iota
	// Postgres is PostgreSQL 12 or later (tested with
	// github.com/jackc/pgx/v5/stdlib).
	Postgres
	// MySQL is MySQL 8 or MariaDB 10.6 or later (tested with MariaDB and
	// github.com/go-sql-driver/mysql, with or without clientFoundRows).
	MySQL
)

// String returns the dialect's name.
func (d Dialect) String() string {
	if d.valid() {
		return dialects[d].name
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

func (d Dialect) valid() bool { return d >= 0 && int(d) < len(dialects) }

// dialects are the dialects by Dialect, each filled in by a file of its
// own.
var dialects = [...]*dialect{SQLite: sqliteDialect, Postgres: postgresDialect, MySQL: mysqlDialect}

// dialect is everything that differs between databases. Each dialect's
// file (sqlite.go, postgres.go, mysql.go) fills one in, with its whole
// statements and the code of what it alone does; onconflict.go holds the
// writes SQLite and PostgreSQL share. The rest of the package has one code
// path, which calls into the store's dialect where databases differ. The
// statements are built once per store, by New (newStatements).
type dialect struct {
	// name is the Dialect's String; system its db.system.name, in
	// telemetry.
	name, system string
	// quote quotes a validated identifier.
	quote func(string) string
	// placeholder returns the n-th (1-based) bind parameter; bigint the
	// same as a BIGINT, where the statement gives it no type (the CASE of
	// the feed's sequencer).
	placeholder, bigint func(n int) string
	// timeArg is the argument that writes a time: Unix milliseconds in
	// SQLite, the time in UTC elsewhere; NULL for the zero time.
	timeArg func(time.Time) any
	// emailVerified is what a read returns as email_verified: the flag,
	// while the stored email is the address it came with
	// (email_verified_for, NULL for any), compared byte for byte.
	emailVerified string

	// writes are how upserts, tombstones and leases are written:
	// INSERT ... ON CONFLICT ... RETURNING (onconflict.go) or ON DUPLICATE
	// KEY UPDATE (mysql.go).
	writes
	// orgs are how organizations and memberships are written (orgs.go).
	orgs orgDialect
	// sessions are how ended sessions are written (sessions.go).
	sessions sessionDialect

	// leaseCursors reads the leases whose names start with a prefix (%s:
	// the lease table); leasePrefix returns its arguments.
	leaseCursors string
	leasePrefix  func(prefix string) []any
	// prune deletes the changes up to a seq and before a time (%[1]s: the
	// change table).
	prune string
	// sequence numbers the committed changes before the feed is read or
	// pruned (feed.go), where their seq is not in commit order already.
	sequence func(s *Store, ctx context.Context) error

	// schemaDir is the folder of embedded migrations.
	schemaDir string
	// createMigrations creates the migrations table; %s is its name.
	createMigrations string
	// tableExists is a query of one row, 1 or 0: does the table named by
	// the first argument exist, in the schema of the second and third (the
	// same), or in the current schema when they are ""?
	tableExists string
	// lock and unlock serialise Migrate across replicas, on the
	// connection that migrates; unlock learns whether the migration
	// failed.
	lock   func(ctx context.Context, conn *sql.Conn, t tableName) error
	unlock func(ctx context.Context, conn *sql.Conn, t tableName, failed bool) error
	// migrationTable returns the table that Migrate fills the migrations
	// in with: the store's, qualified with its schema where the database
	// needs it.
	migrationTable func(s *Store, ctx context.Context, conn *sql.Conn) (tableName, error)
	// apply applies migration m and records its version in the migrations
	// table mt; op names the step in errors.
	apply func(s *Store, ctx context.Context, conn *sql.Conn, op, mt string, table tableName, m migration) error
}

// writes are how a family of dialects writes. Their statements are in
// statements; each function runs under the operation's retries.
type writes struct {
	// statements fills in the statements of q that write (upsert,
	// tombstone, upsertSet, acquire, and what the family's code reads),
	// for table t: insert is the INSERT of one row of insertColumns,
	// columns the read's column list.
	statements func(d *dialect, t tableName, insert, columns string, q *statements)
	// write runs query, an upsert or tombstone, for w with the fields in
	// fields and a deleted_at of deleted (zero for none): in tx, once, or
	// with tx nil on its own, under the store's retries (s.run). It
	// reports Created when the row is new, changed when an existing row
	// changed, and Stale with the stored row otherwise. Its statements
	// are prepared before tx began (s.prepareWrite).
	write func(s *Store, ctx context.Context, tx *sql.Tx, op, query string, w *usersync.Write, fields usersync.Fields, deleted time.Time, changed usersync.Outcome) (usersync.User, usersync.Outcome, error)
	// upsertChunk runs upsert, the multi-row upsert of c with args, in tx,
	// and fills c's users and outcomes.
	upsertChunk func(s *Store, ctx context.Context, tx *sql.Tx, upsert *sql.Stmt, args []any, c chunk) error
	// chunkQueries are the statements of a chunk of n rows beside its
	// upsert, prepared with it for a full chunk.
	chunkQueries func(s *Store, n int) []string
	// acquire runs s.sql.acquire (and what else it takes) and reports
	// whether holder holds the lease, and its cursor.
	acquire func(s *Store, ctx context.Context, name, holder string, expires, at int64) (cursor int64, ok bool, err error)
	// renewed reports whether holder holds the lease after s.sql.renew
	// changed n rows.
	renewed func(s *Store, ctx context.Context, name, holder string, n int64) (bool, error)
}

// orgDialect is how a dialect writes organizations and memberships. A
// write of them runs in a transaction: it reads the rows it may change
// with a lock, decides in Go by the write rules, and writes the rows that
// change (orgs.go). What keeps concurrent writers apart differs.
type orgDialect struct {
	// forUpdate ends the read of the rows a write may change: it locks
	// them, and on MySQL the gaps of keys not stored, until the
	// transaction ends. "" where writers take turns (SQLite).
	forUpdate string
	// forShare ends the read of the organizations and users a membership
	// write checks for tombstones, so that their delete (which ends their
	// memberships) waits for the write's commit, and the write for the
	// delete's: MySQL's share locks, gaps included. "" where writers take
	// turns (SQLite) or lockKeys does it (PostgreSQL).
	forShare string
	// replace is the clause that makes a multi-row INSERT of cols
	// overwrite the rows whose primary key (keys) is stored: every other
	// column takes the inserted value.
	replace func(keys, cols []string) string
	// lockKeys, if set, takes transaction locks on keys (organization
	// keys and users' token identifiers) that serialise a membership
	// write with the delete of its organization or user, rows stored or
	// not: PostgreSQL's advisory locks (which no row lock gives for a row
	// not stored yet).
	lockKeys func(s *Store, ctx context.Context, tx *sql.Tx, keys []string) error
}

// sessionDialect is how a dialect records ended sessions (sessions.go).
type sessionDialect struct {
	// now is the database server's clock in Unix milliseconds, as the
	// statement runs (not as its transaction began): an ending's
	// recorded_at.
	now string
	// keep ends a multi-row INSERT of endings so that a row whose key is
	// recorded already (a unique index of the table) is not inserted,
	// without hiding any other error.
	keep string
	// checkKept counts, after each INSERT of endings and in its
	// transaction, the rows of its endings' keys, and runs the
	// transaction again if one is missing: MariaDB's INSERT ... ON
	// DUPLICATE KEY UPDATE can give a new row an AUTO_INCREMENT seq that
	// a concurrent INSERT took, and then "keep" that other row instead,
	// which loses the ending without an error (mysql.go).
	checkKept bool
}

// statements are a store's SQL: its dialect's, for its table. New builds
// them once; statements of a list of keys (GetMany, UpsertBatch, the
// sequencer) are completed per call, from a prefix here.
type statements struct {
	// The reads of users (users.go); getManyPrefix is completed by the
	// IDs' parameters and ")".
	getByID, getByToken, getByExternalID, list, count, getManyPrefix string
	// The writes of users (the dialect's writes.statements): upsert and
	// tombstone write one row; upsertSet is upsert's ON CONFLICT / ON
	// DUPLICATE KEY part, for the multi-row upserts of UpsertBatch.
	upsert, tombstone, upsertSet string
	// MySQL's UpsertBatch reads the rows' versions FOR UPDATE (lockPrefix)
	// and the changed users back (getByTokensPrefix), by a list of token
	// identifiers.
	lockPrefix, getByTokensPrefix string

	// The change feed (feed.go): changes reads it, prune deletes from it.
	// The sequencer (PostgreSQL, MySQL) finds a change without a seq
	// (unsequenced), locks the
	// sequence row (lastSeq), reads a batch (nextUnsequenced, and
	// laterChangesPrefix: later changes of its users, completed by the
	// users' parameters and ") ORDER BY id"), numbers it (setSeqPrefix,
	// completed by a CASE and a list of ids) and records the last seq
	// (setLastSeq).
	changes, prune                                            string
	unsequenced, lastSeq, nextUnsequenced, laterChangesPrefix string
	setSeqPrefix, setLastSeq                                  string

	// Leases (lease.go): acquire takes a lease (the dialect's; MySQL also
	// reads its holder), renew and release, and leaseCursors reads the
	// cursors of the leases of a prefix.
	acquire, holder, renew, release, leaseCursors string

	// orgs are the statements of organizations and memberships
	// (orgsql.go).
	orgs orgStatements

	// sessions are the statements of ended sessions (sessions.go).
	sessions sessionStatements
}

// newStatements returns the statements of table t in dialect d.
func newStatements(d *dialect, t tableName) statements {
	p := d.placeholder
	users, changes, sequence, leases := t.quoted(d), t.qualified(d, "changes"), t.qualified(d, "sequence"), t.qualified(d, "leases")
	read := slices.Clone(userColumns)
	read[slices.Index(read, "email_verified")] = d.emailVerified
	cols := strings.Join(read, ", ")
	q := statements{
		getByID:       fmt.Sprintf("SELECT %s FROM %s WHERE id = %s", cols, users, p(1)),
		getByToken:    fmt.Sprintf("SELECT %s FROM %s WHERE token_identifier = %s", cols, users, p(1)),
		list:          fmt.Sprintf("SELECT %s FROM %s WHERE id > %s AND deleted_at IS NULL ORDER BY id LIMIT %s", cols, users, p(1), p(2)),
		count:         fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE deleted_at IS NULL", users),
		getManyPrefix: fmt.Sprintf("SELECT %s FROM %s WHERE deleted_at IS NULL AND id IN (", cols, users),
		// Live users first: a tombstone (which keeps its external ID) only
		// when no live user has it.
		getByExternalID: fmt.Sprintf("SELECT %s FROM %s WHERE issuer = %s AND external_id = %s ORDER BY CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END, updated_at DESC, id LIMIT 1",
			cols, users, p(1), p(2)),

		// A change's external ID is its user's as the feed is read: a
		// tombstone's never changes, so a Deleted change names the app's
		// row for good.
		// The change of an organization or a membership (entity above 0)
		// has a user_id of its own (migration 6, PostgreSQL 7): it
		// joins no user.
		changes: fmt.Sprintf("SELECT c.seq, c.user_id, c.outcome, c.at, COALESCE(u.external_id, ''), c.entity, c.organization_id, c.subject "+
			"FROM %s c LEFT JOIN %s u ON u.id = c.user_id AND c.entity = 0 WHERE c.seq > %s ORDER BY c.seq LIMIT %s",
			changes, users, p(1), p(2)),
		prune:              fmt.Sprintf(d.prune, changes),
		unsequenced:        "SELECT id FROM " + changes + " WHERE seq IS NULL LIMIT 1",
		lastSeq:            "SELECT last_seq FROM " + sequence + " WHERE id = 1 FOR UPDATE",
		nextUnsequenced:    fmt.Sprintf("SELECT id, user_id, user_seq FROM %s WHERE seq IS NULL ORDER BY id LIMIT %d", changes, sequenceBatch),
		laterChangesPrefix: fmt.Sprintf("SELECT id, user_id, user_seq FROM %s WHERE seq IS NULL AND id > %s AND user_id IN (", changes, p(1)),
		setSeqPrefix:       fmt.Sprintf("UPDATE %s SET seq = CASE id", changes),
		setLastSeq:         "UPDATE " + sequence + " SET last_seq = " + p(1) + " WHERE id = 1",

		renew:        fmt.Sprintf("UPDATE %s SET expires_at = %s, cursor_pos = %s WHERE name = %s AND holder = %s", leases, p(1), p(2), p(3), p(4)),
		release:      fmt.Sprintf("UPDATE %s SET expires_at = 0 WHERE name = %s AND holder = %s", leases, p(1), p(2)),
		leaseCursors: fmt.Sprintf(d.leaseCursors, leases),
	}
	params := make([]string, len(insertColumns))
	for i := range params {
		params[i] = p(i + 1)
	}
	insert := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", users, strings.Join(insertColumns, ", "), strings.Join(params, ", "))
	d.statements(d, t, insert, cols, &q)
	q.orgs = newOrgStatements(d, t)
	q.sessions = newSessionStatements(d, t)
	return q
}

// inList returns n bind parameters separated by commas.
func inList(d *dialect, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.placeholder(i + 1))
	}
	return b.String()
}

// question is the bind parameter of SQLite and MySQL.
func question(int) string { return "?" }

// utc is the timeArg of PostgreSQL and MySQL.
func utc(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// configuredTable is the migrationTable of SQLite and MySQL: the store's
// table, as configured.
func (s *Store) configuredTable(context.Context, *sql.Conn) (tableName, error) { return s.table, nil }
