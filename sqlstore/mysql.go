package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

// mysqlDialect is MySQL 8 and MariaDB 10.6+, Galera clusters included.
// There is no RETURNING: a write is INSERT ... ON DUPLICATE KEY UPDATE and
// a read of the row after it. Transactions commit out of the order of the
// change feed's ids, so a change's seq is assigned after it committed
// (feed.go). Every DDL statement commits on its own, so Migrate claims
// each migration and checks the schema it leaves. Times are DATETIME(3) in
// UTC.
var mysqlDialect = &dialect{
	name:        "mysql",
	system:      "mysql",
	quote:       func(s string) string { return "`" + s + "`" },
	placeholder: question,
	bigint:      question,
	timeArg:     utc,
	// Binary strings: no collation, no padding.
	emailVerified: "(email_verified AND (email_verified_for IS NULL OR CAST(email_verified_for AS BINARY) = CAST(email AS BINARY)))",
	writes:        mysqlWrites,
	// The checks of a membership write lock the rows they read, and the
	// gaps of keys not stored (REPEATABLE READ), in share mode. A Galera
	// cluster certifies the rows a transaction writes, not its locks: a
	// membership written on one node while its user or organization is
	// deleted on another, at the same moment, can stay live.
	orgs: orgDialect{forUpdate: " FOR UPDATE", forShare: " LOCK IN SHARE MODE", replace: mysqlReplace},
	// UTC_TIMESTAMP is the time the statement began, in UTC whatever the
	// session's time_zone (UNIX_TIMESTAMP(NOW(3)) reads NOW in the
	// session's zone, which is ambiguous in the hour a DST zone repeats);
	// its microseconds, divided, are rounded down to the millisecond. ON
	// DUPLICATE KEY UPDATE seq = seq leaves an ending whose key is
	// recorded (the unique keys of migration 7) as it is, where INSERT
	// IGNORE would also turn errors of values into warnings. Each INSERT
	// is checked (checkKept): of 16 concurrent three-row INSERTs that
	// share two keys, MariaDB 10.11 (innodb_autoinc_lock_mode 1) lost one
	// new ending in about 1 round in 20, giving its row the seq of a row
	// another INSERT had just taken, which ON DUPLICATE KEY then kept
	// (TestEndSessionsConcurrently and the conformance case
	// Sessions/ConcurrentRecordOnce hold it).
	sessions: sessionDialect{
		now:       "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)",
		keep:      "ON DUPLICATE KEY UPDATE seq = seq",
		checkKept: true,
	},

	// VARBINARY: LEFT counts bytes.
	leaseCursors: "SELECT name, cursor_pos FROM %s WHERE LEFT(name, ?) = ?",
	leasePrefix:  func(prefix string) []any { return []any{len(prefix), prefix} },
	prune:        "DELETE FROM %[1]s WHERE seq <= ? AND at < ?",
	sequence:     (*Store).sequence,

	schemaDir:        "schema/mysql",
	createMigrations: "CREATE TABLE IF NOT EXISTS %s (version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL) ENGINE=InnoDB",
	tableExists:      "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = IF(? = '', DATABASE(), ?)",
	lock:             mysqlLock,
	unlock: func(ctx context.Context, conn *sql.Conn, t tableName, _ bool) error {
		_, err := conn.ExecContext(ctx, "SELECT RELEASE_LOCK("+mysqlLockKey(t)+")")
		return err
	},
	migrationTable: (*Store).configuredTable,
	apply:          (*Store).applyMySQL,
}

// mysqlWrites are MySQL's writes: ON DUPLICATE KEY UPDATE, whose count of
// affected rows and a read of the row after it tell the outcome.
var mysqlWrites = writes{
	statements:   mysqlStatements,
	write:        (*Store).writeMySQL,
	upsertChunk:  (*Store).upsertChunkMySQL,
	chunkQueries: func(s *Store, n int) []string { return []string{s.readRowsSQL(n), s.getByTokensSQL(n)} },
	acquire:      (*Store).acquireMySQL,
	renewed:      (*Store).renewedMySQL,
}

// mysqlStatements fills in the writes of table t (see writes).
func mysqlStatements(d *dialect, table tableName, insert, cols string, q *statements) {
	t := table.quoted(d)
	// ON DUPLICATE KEY UPDATE assigns left to right and later expressions
	// see earlier assignments, so the row-level columns come first, while
	// every field version still holds its stored value, and each field's
	// value comes before its version. It also fires on a duplicate primary
	// key, so every change is guarded by "same token identifier": a write
	// whose new ID collides with another user's row leaves that row alone.
	const mine = "token_identifier = VALUES(token_identifier) AND deleted_at IS NULL"
	var set, newer []string
	for _, pc := range profileColumns {
		newer = append(newer, fmt.Sprintf("VALUES(%s) > %s", pc.version, pc.version))
	}
	applies := fmt.Sprintf("%s AND (%s)", mine, strings.Join(newer, " OR "))
	set = append(set,
		fmt.Sprintf("change_count = IF(%s, change_count + 1, change_count)", applies),
		fmt.Sprintf("updated_at = IF(%s, VALUES(updated_at), updated_at)", applies),
		fmt.Sprintf("version = IF(%s AND VALUES(version) > version, VALUES(version), version)", applies))
	for _, pc := range profileColumns {
		cond := fmt.Sprintf("%s AND VALUES(%s) > %s", mine, pc.version, pc.version)
		for _, c := range append(pc.names(), pc.version) {
			set = append(set, fmt.Sprintf("%s = IF(%s, VALUES(%s), %s)", c, cond, c, c))
		}
	}
	q.upsertSet = "ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
	q.upsert = insert + " " + q.upsertSet

	clear := []string{"change_count = IF(" + mine + ", change_count + 1, change_count)"} // first: it sees deleted_at as it was
	for _, pc := range cleared() {
		for _, c := range pc.names() {
			clear = append(clear, fmt.Sprintf("%s = IF(%s, VALUES(%s), %s)", c, mine, c, c))
		}
	}
	clear = append(clear,
		"updated_at = IF("+mine+", VALUES(updated_at), updated_at)",
		"deleted_at = IF("+mine+", VALUES(deleted_at), deleted_at)")
	q.tombstone = fmt.Sprintf("%s ON DUPLICATE KEY UPDATE %s", insert, strings.Join(clear, ", "))

	var versions []string
	for _, pc := range profileColumns {
		versions = append(versions, pc.version)
	}
	q.lockPrefix = fmt.Sprintf("SELECT token_identifier, deleted_at, %s FROM %s WHERE token_identifier IN (", strings.Join(versions, ", "), t)
	q.getByTokensPrefix = fmt.Sprintf("SELECT %s FROM %s WHERE token_identifier IN (", cols, t)

	// A lease's holder is assigned first: expires_at then sees whether it
	// was taken.
	leases := table.qualified(d, "leases")
	q.acquire = fmt.Sprintf(`INSERT INTO %s (name, holder, expires_at, cursor_pos) VALUES (?, ?, ?, 0)
		ON DUPLICATE KEY UPDATE holder = IF(holder = VALUES(holder) OR expires_at < ?, VALUES(holder), holder),
		expires_at = IF(holder = VALUES(holder), VALUES(expires_at), expires_at)`, leases)
	q.holder = fmt.Sprintf("SELECT holder, cursor_pos FROM %s WHERE name = ?", leases)
}

// mysqlReplace is the replace of orgDialect: ON DUPLICATE KEY UPDATE,
// which the primary key alone can raise (the tables of organizations and
// memberships have no other unique key), every other column from
// VALUES().
func mysqlReplace(keys, cols []string) string {
	var set []string
	for _, c := range cols {
		if !slices.Contains(keys, c) {
			set = append(set, c+" = VALUES("+c+")")
		}
	}
	return "ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
}

// writeMySQL is the write of writes. Without a transaction, the
// statement and the read-back retry on their own, so that a write that
// committed is never run again (and reported Stale).
func (s *Store) writeMySQL(ctx context.Context, tx *sql.Tx, op, query string, w *usersync.Write, fields usersync.Fields, deleted time.Time, changed usersync.Outcome) (usersync.User, usersync.Outcome, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	args := insertArgs(make([]any, 0, len(insertColumns)), s.dialect, w, fields, w.At, w.At, deleted)
	var res sql.Result
	attempts, err := s.run(ctx, tx, func() (err error) {
		res, err = in(ctx, tx, st).ExecContext(ctx, args...)
		return err
	})
	if err != nil {
		return usersync.User{}, usersync.Stale, s.wrapN(op, attempts, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return usersync.User{}, usersync.Stale, s.wrap(op, err)
	}
	u, err := s.queryUserIn(ctx, tx, op, s.sql.getByToken, w.TokenIdentifier)
	if errors.Is(err, usersync.ErrNotFound) {
		// Nothing inserted and no row of ours: the new ID belongs to
		// another user (whose row the guarded update left alone).
		return usersync.User{}, usersync.Stale, fmt.Errorf("%w: ID %q is taken", usersync.ErrInvalid, w.ID)
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

// created reports whether u, as read back after w, was created by w: it
// has w's ID and was created at w's time (to the store's millisecond). A
// write that updates may carry the ID of the user it updates; only a retry
// of the very write that created the user could also carry its time.
func created(u *usersync.User, w *usersync.Write) bool {
	d := u.CreatedAt.Sub(w.At)
	return u.ID == w.ID && d > -time.Millisecond && d < time.Millisecond
}

// upsertChunkMySQL is the upsertChunk of writes: the outcomes come from
// the rows as they were, read with a lock (which also keeps other writers
// of the same keys out until commit), and the users from a read after the
// write.
func (s *Store) upsertChunkMySQL(ctx context.Context, tx *sql.Tx, upsert *sql.Stmt, args []any, c chunk) error {
	byKey := c.byKey()
	before, err := s.readRows(ctx, tx, c)
	if err != nil {
		return err
	}
	var changed []any
	for _, i := range c.idx {
		w := &c.ws[i]
		old, ok := before[w.TokenIdentifier]
		switch {
		case !ok:
			c.outcomes[i] = usersync.Created
		case old.deleted || !old.newer(w):
			c.outcomes[i] = usersync.Stale
			continue
		default:
			c.outcomes[i] = usersync.Updated
		}
		changed = append(changed, w.TokenIdentifier)
	}
	if _, err := upsert.ExecContext(ctx, args...); err != nil {
		return err
	}
	if len(changed) == 0 {
		return nil
	}
	get, err := s.batchStmt(ctx, tx, s.getByTokensSQL(len(changed)), len(changed))
	if err != nil {
		return err
	}
	rows, err := get.QueryContext(ctx, changed...)
	if err != nil {
		return err
	}
	err = scanUsers(rows, func(u usersync.User) error {
		i := byKey[u.TokenIdentifier]
		if c.outcomes[i] == usersync.Created && u.ID != c.ws[i].ID {
			return fmt.Errorf("%w: usersync/sqlstore: upsert batch %s: the ID is taken by another user", usersync.ErrInvalid, s.table)
		}
		c.users[i] = u
		return nil
	})
	if err != nil {
		return err
	}
	for _, i := range c.idx {
		if c.outcomes[i] != usersync.Stale && c.users[i].ID == "" {
			// ON DUPLICATE KEY UPDATE met another user's ID, and the
			// guarded update left that row alone: nothing was stored.
			return fmt.Errorf("%w: usersync/sqlstore: upsert batch %s: the ID is taken by another user", usersync.ErrInvalid, s.table)
		}
	}
	return nil
}

// readRowsSQL returns the locking read of n rows' versions by token
// identifier.
func (s *Store) readRowsSQL(n int) string {
	return s.sql.lockPrefix + inList(s.dialect, n) + ") FOR UPDATE"
}

// getByTokensSQL returns the read of n users by token identifier.
func (s *Store) getByTokensSQL(n int) string {
	return s.sql.getByTokensPrefix + inList(s.dialect, n) + ")"
}

// rowVersions is what an upsert decides by: whether the row is a
// tombstone, and the version of each field.
type rowVersions struct {
	deleted  bool
	versions []int64 // by profileColumns
}

// newer reports whether w changes a field of the row.
func (r rowVersions) newer(w *usersync.Write) bool {
	for n, pc := range profileColumns {
		if w.Fields&pc.field != 0 && int64(w.Version) > r.versions[n] {
			return true
		}
	}
	return false
}

// readRows reads the rows of the token identifiers of c's writes FOR
// UPDATE.
func (s *Store) readRows(ctx context.Context, tx *sql.Tx, c chunk) (map[string]rowVersions, error) {
	keys := make([]any, len(c.idx))
	for n, i := range c.idx {
		keys[n] = c.ws[i].TokenIdentifier
	}
	lock, err := s.batchStmt(ctx, tx, s.readRowsSQL(len(keys)), len(keys))
	if err != nil {
		return nil, err
	}
	rows, err := lock.QueryContext(ctx, keys...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]rowVersions, len(keys))
	for rows.Next() {
		var key string
		var deleted sql.NullString
		r := rowVersions{versions: make([]int64, len(profileColumns))}
		dest := []any{&key, &deleted}
		for n := range r.versions {
			dest = append(dest, &r.versions[n])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		r.deleted = deleted.Valid
		out[key] = r
	}
	return out, rows.Err()
}

// acquireMySQL is the acquire of writes: the statement takes the lease
// or leaves it, and a read tells which.
func (s *Store) acquireMySQL(ctx context.Context, name, holder string, expires, at int64) (int64, bool, error) {
	if _, err := s.db.ExecContext(ctx, s.sql.acquire, name, holder, expires, at); err != nil {
		return 0, false, err
	}
	var h string
	var cursor int64
	if err := s.db.QueryRowContext(ctx, s.sql.holder, name).Scan(&h, &cursor); err != nil {
		return 0, false, err
	}
	return cursor, h == holder, nil
}

// renewedMySQL is the renewed of writes. MySQL counts a row whose values
// did not change as 0: then it asks who holds the lease.
func (s *Store) renewedMySQL(ctx context.Context, name, holder string, n int64) (bool, error) {
	if n == 1 {
		return true, nil
	}
	var h string
	var c int64
	err := s.db.QueryRowContext(ctx, s.sql.holder, name).Scan(&h, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil && h == holder, err
}

// mysqlLockKey is the name of Migrate's lock (GET_LOCK), a string
// literal.
func mysqlLockKey(t tableName) string { return "'usersync:" + t.String() + "'" }

// mysqlLock takes Migrate's lock. GET_LOCK returns 0 when it times out,
// rather than failing.
func mysqlLock(ctx context.Context, conn *sql.Conn, t tableName) error {
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+mysqlLockKey(t)+", 60)").Scan(&got); err != nil {
		return err
	}
	if got.Int64 != 1 {
		return errors.New("timed out waiting for another migration")
	}
	return nil
}

// Migrations: MySQL runs every DDL statement in a transaction of its own,
// so a migration that stopped midway is run again whole: a statement that
// creates what exists already then fails, and Migrate must tell "done
// before" from "something else of that name". It takes such a failure as
// done only for the object the statement itself creates (doneBefore), and
// before it records the version it checks that the schema holds what the
// version needs (checkMySQLSchema).

// applyMySQL applies m on MySQL, whose DDL statements commit one by one:
// it claims the migration, runs its statements (one whose failure says it
// ran before counts as done: see doneBefore), checks the schema the
// version needs, and records the version. On a failure it gives its claim
// back, so that the next Migrate runs the migration again at once.
//
// The claim is there for a Galera cluster: GET_LOCK serialises the
// replicas of one server only, and replicas attached to other nodes could
// otherwise run the same migration at the same time.
func (s *Store) applyMySQL(ctx context.Context, conn *sql.Conn, op, mt string, table tableName, m migration) (err error) {
	claimed, done, err := s.claim(ctx, conn, mt, m.version)
	if err != nil {
		return s.wrap(op, err)
	}
	if done {
		return nil
	}
	defer func() {
		if err == nil {
			return
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		// Best effort: a claim left behind expires (claimTimeout).
		_, _ = conn.ExecContext(uctx, "DELETE FROM "+mt+" WHERE version = ? AND applied_at = ?", m.version, claimed)
	}()
	for _, st := range m.stmts {
		attempts, err := s.try(ctx, func() error {
			_, err := conn.ExecContext(ctx, st)
			return err
		})
		if err != nil && !doneBefore(m, table, st, err) {
			return s.wrapN(op, attempts, err)
		}
	}
	// Again when the database asks: on Galera a read of the schema can
	// meet a deadlock while another node's DDL is applied.
	if _, err := s.try(ctx, func() error { return s.checkMySQLSchema(ctx, conn, table, m) }); err != nil {
		return err
	}
	return s.exec(ctx, conn, op, "UPDATE "+mt+" SET applied_at = ? WHERE version = ?", time.Now().UnixMilli(), m.version)
}

// claimTimeout is how long a claimed migration may stay under way before
// another Migrate takes it over (its claimant died).
const claimTimeout = 10 * time.Minute

// claim takes migration v for this Migrate, on MySQL: GET_LOCK serialises
// the replicas of one server only, and on a Galera cluster replicas on
// other nodes run Migrate at the same time. The first to insert the
// migration's row (with a negative applied_at: minus the time of its
// claim) applies it; the others wait until it is applied, and report done.
//
// It returns the applied_at of its claim, which the claimant deletes if
// the migration fails.
func (s *Store) claim(ctx context.Context, conn *sql.Conn, mt string, v int) (claimed int64, done bool, err error) {
	for {
		now := time.Now().UnixMilli()
		_, err := conn.ExecContext(ctx, "INSERT INTO "+mt+" (version, applied_at) VALUES (?, ?)", v, -now)
		if err == nil {
			return -now, false, nil // ours
		}
		if n := mysqlNumber(err); n != 1062 && !retryable(err) {
			return 0, false, err
		}
		var at int64
		err = conn.QueryRowContext(ctx, "SELECT applied_at FROM "+mt+" WHERE version = ?", v).Scan(&at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue // the other claim was rolled back: try again
		case err != nil:
			return 0, false, err
		case at > 0:
			return 0, true, nil
		case now+at > claimTimeout.Milliseconds():
			// Its claimant died: take it over, unless another did.
			res, err := conn.ExecContext(ctx, "UPDATE "+mt+" SET applied_at = ? WHERE version = ? AND applied_at = ?", -now, v, at)
			if err != nil {
				return 0, false, err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return -now, false, nil
			}
			continue
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, false, ctx.Err()
		case <-t.C:
		}
	}
}

// ErrSchemaMismatch reports that a MySQL migration found a schema other
// than the one it makes (a column of another type, a missing index, a
// trigger of the same name that does something else), made or changed by
// hand: Migrate fails with an error wrapping it and usersync.ErrInvalid,
// and does not record the version.
var ErrSchemaMismatch = errors.New("usersync/sqlstore: the schema is not the one the migration makes")

// objectName matches a name as the migrations write it: `db`.`name`,
// `name` or name.
const objectName = "((?:`[^`]+`|\\w+)(?:\\.(?:`[^`]+`|\\w+))?)"

var (
	createsTable   = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?` + objectName)
	createsIndex   = regexp.MustCompile(`(?is)^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?` + objectName)
	createsTrigger = regexp.MustCompile(`(?is)^\s*CREATE\s+TRIGGER\s+` + objectName +
		`\s+(BEFORE|AFTER)\s+(INSERT|UPDATE|DELETE)\s+ON\s+` + objectName + `\s+FOR\s+EACH\s+ROW\s+(.*)$`)
	altersTable = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+`)
	addsColumn  = regexp.MustCompile(`(?is)\bADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?` + objectName)
	// The name in MySQL's and MariaDB's messages: "Duplicate column name
	// 'x'", "Duplicate key name 'x'", "Table 'x' already exists", "Trigger
	// 'db.x' already exists" (MySQL 8: "Trigger already exists").
	quotedInMessage = regexp.MustCompile(`'([^']*)'`)
)

// baseName returns the last part of a name as the migrations write it,
// without quotes (the names are identifiers: no dots, no backticks).
func baseName(name string) string {
	if i := strings.LastIndex(name, "."); i >= 0 {
		name = name[i+1:]
	}
	return strings.Trim(name, "`")
}

// withoutComments returns st without the comment lines that lead it (a
// statement of a migration file keeps the comments above it).
func withoutComments(st string) string {
	for strings.HasPrefix(strings.TrimSpace(st), "--") {
		_, rest, _ := strings.Cut(strings.TrimSpace(st), "\n")
		st = rest
	}
	return st
}

// doneBefore reports whether err, from statement st of MySQL migration m
// (for the users table t), says that st ran before: a migration that
// stopped midway (a crash, a missing privilege, a schema the check
// refused) is run again whole. That is so when what st itself creates
// exists already (a column that st adds, the index, table or trigger that
// st creates), or when st uses a column that m adds and removes again (a
// temporary, such as version 3's created_at_utc), which is gone because
// the statement of m that removes it ran. Any other failure, and an
// "already exists" of another object (the column of another clause, a
// duplicate entry), is an error. Whether what exists is what m makes is
// checked after its statements (checkMySQLSchema).
func doneBefore(m migration, t tableName, st string, err error) bool {
	n, msg := mysqlError(err)
	named := ""
	if q := quotedInMessage.FindStringSubmatch(msg); q != nil {
		named = q[1]
		if i := strings.LastIndex(named, "."); i >= 0 {
			named = named[i+1:]
		}
	}
	st = withoutComments(st)
	same := func(name string) bool { return named == "" || strings.EqualFold(named, baseName(name)) }
	isNamed := func(name string) bool { return strings.EqualFold(name, named) }
	switch n {
	case 1050: // table exists
		c := createsTable.FindStringSubmatch(st)
		return c != nil && same(c[1])
	case 1061: // duplicate key name
		c := createsIndex.FindStringSubmatch(st)
		return c != nil && same(c[1])
	case 1359: // trigger exists
		c := createsTrigger.FindStringSubmatch(st)
		return c != nil && same(c[1])
	case 1060: // duplicate column
		return named != "" && slices.ContainsFunc(addedColumns(st), isNamed)
	case 1054: // unknown column
		if named == "" || !slices.ContainsFunc(mysqlNeeds(m.version, t).dropped[t.base], isNamed) {
			return false
		}
		for _, other := range m.stmts {
			if slices.ContainsFunc(addedColumns(other), isNamed) {
				return true // added by m, and dropped by m: a temporary
			}
		}
	}
	return false
}

// addedColumns returns the columns an ALTER TABLE statement adds.
func addedColumns(st string) []string {
	st = withoutComments(st)
	if !altersTable.MatchString(st) {
		return nil
	}
	var cols []string
	for _, c := range addsColumn.FindAllStringSubmatch(st, -1) {
		cols = append(cols, baseName(c[1]))
	}
	return cols
}

// schemaNeeds is what a MySQL migration leaves in the schema: the columns
// of tables (table -> "name type[|type] [null], ..."; a type is
// information_schema's DATA_TYPE, and a column without "null" is NOT
// NULL), columns it drops, and indexes. Its triggers are checked against
// its own CREATE TRIGGER statements.
type schemaNeeds struct {
	columns map[string]string
	dropped map[string][]string
	indexes []indexNeed
}

// indexNeed is an index: its table, name, uniqueness and columns in order.
type indexNeed struct {
	table, name string
	unique      bool
	columns     string // "a,b"
}

// mysqlNeeds returns what MySQL migration version leaves, for the users
// table t. A migration added to schema/mysql adds its needs here.
func mysqlNeeds(version int, t tableName) schemaNeeds {
	users, leases, changes, sequence := t.base, t.object("leases"), t.object("changes"), t.object("sequence")
	switch version {
	case 1:
		return schemaNeeds{
			columns: map[string]string{users: "id varchar, token_identifier varchar, issuer varchar, subject varchar, " +
				"name text, email text, email_verified tinyint, picture_url text, username text, phone_number text, metadata json|longtext null, " +
				"name_version bigint, email_version bigint, picture_url_version bigint, username_version bigint, phone_number_version bigint, metadata_version bigint, " +
				"version bigint, created_at bigint, updated_at bigint, deleted_at bigint null"},
			indexes: []indexNeed{{users, "PRIMARY", true, "id"}, {users, "token_identifier", true, "token_identifier"}},
		}
	case 2:
		return schemaNeeds{columns: map[string]string{users: "id varbinary, token_identifier varbinary, email_verified_version bigint"}}
	case 3:
		return schemaNeeds{
			columns: map[string]string{
				users: "issuer varbinary, given_name text, given_name_version bigint, family_name text, family_name_version bigint, " +
					"external_id varbinary, external_id_version bigint, last_sign_in_at datetime null, last_sign_in_at_version bigint, " +
					"created_at datetime, updated_at datetime, deleted_at datetime null",
				leases: "name varbinary, holder varbinary, expires_at bigint, cursor_pos bigint",
			},
			dropped: map[string][]string{users: {"created_at_utc", "updated_at_utc", "deleted_at_utc"}},
			indexes: []indexNeed{{users, t.object("external_id"), false, "issuer,external_id"}, {leases, "PRIMARY", true, "name"}},
		}
	case 4:
		return schemaNeeds{
			columns: map[string]string{
				users:    "change_count bigint",
				changes:  "id bigint, seq bigint null, user_id varbinary, user_seq bigint, outcome tinyint, at datetime",
				sequence: "id tinyint, last_seq bigint",
			},
			indexes: []indexNeed{{changes, "PRIMARY", true, "id"}, {changes, t.object("changes_seq"), true, "seq"}, {sequence, "PRIMARY", true, "id"}},
		}
	case 5:
		return schemaNeeds{columns: map[string]string{users: "email_verified_for text null"}}
	case 6:
		organizations, memberships := t.object("organizations"), t.object("memberships")
		return schemaNeeds{
			columns: map[string]string{
				organizations: "org_key varbinary, issuer varbinary, org_id varbinary, name text, slug text, image_url text, metadata json|longtext null, " +
					"version bigint, created_at datetime null, updated_at datetime, deleted_at datetime null, change_count bigint",
				memberships: "org_key varbinary, user_key varbinary, issuer varbinary, org_id varbinary, user_subject varbinary, membership_id varbinary, " +
					"role text, permissions text, metadata json|longtext null, version bigint, created_at datetime null, updated_at datetime, deleted_at datetime null, change_count bigint",
				changes: "entity tinyint, organization_id varbinary, subject varbinary",
			},
			indexes: []indexNeed{{organizations, "PRIMARY", true, "org_key"}, {memberships, "PRIMARY", true, "org_key,user_key"},
				{memberships, t.object("mem_user"), false, "user_key,org_key"}},
		}
	case 7:
		ended := t.object("ended_sessions")
		return schemaNeeds{
			columns: map[string]string{ended: "seq bigint, issuer varbinary, session_id varbinary, subject varbinary, ended_at bigint, recorded_at bigint, " +
				"session_key varbinary null, user_key varbinary null"},
			indexes: []indexNeed{{ended, "PRIMARY", true, "seq"}, {ended, t.object("ended_sid"), true, "issuer,session_key"},
				{ended, t.object("ended_user"), true, "issuer,user_key"}, {ended, t.object("ended_rec"), false, "recorded_at,seq"},
				{ended, t.object("ended_end"), false, "ended_at"}},
		}
	}
	return schemaNeeds{}
}

// checkMySQLSchema checks that the schema holds what migration m needs
// (mysqlNeeds, and the triggers m creates, as m defines them), failing
// with an error wrapping usersync.ErrInvalid and ErrSchemaMismatch that
// names every difference.
func (s *Store) checkMySQLSchema(ctx context.Context, conn *sql.Conn, t tableName, m migration) error {
	needs := mysqlNeeds(m.version, t)
	var problems []string
	q := func(query string, args ...any) (*sql.Rows, error) {
		// The schema: the table's database, or the connection's.
		return conn.QueryContext(ctx, query, append([]any{t.schema, t.schema}, args...)...)
	}
	const inSchema = "table_schema = IF(? = '', DATABASE(), ?)"

	for _, table := range sortedKeys(needs.columns) {
		type col struct {
			typ      string
			nullable bool
		}
		have := map[string]col{}
		rows, err := q("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE "+inSchema+" AND table_name = ?", table)
		if err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		for rows.Next() {
			var name, typ, nullable string
			if err := rows.Scan(&name, &typ, &nullable); err != nil {
				rows.Close()
				return s.wrap("migrate: read the schema", err)
			}
			have[strings.ToLower(name)] = col{strings.ToLower(typ), nullable == "YES"}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		if len(have) == 0 {
			problems = append(problems, fmt.Sprintf("table %s is missing", table))
			continue
		}
		for spec := range strings.SplitSeq(needs.columns[table], ",") {
			f := strings.Fields(spec)
			name, types, nullable := f[0], strings.Split(f[1], "|"), len(f) > 2
			c, ok := have[name]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("column %s.%s is missing", table, name))
			case !slices.Contains(types, c.typ):
				problems = append(problems, fmt.Sprintf("column %s.%s is %s, not %s", table, name, c.typ, strings.Join(types, " or ")))
			case c.nullable && !nullable:
				problems = append(problems, fmt.Sprintf("column %s.%s is nullable, not NOT NULL", table, name))
			case !c.nullable && nullable:
				problems = append(problems, fmt.Sprintf("column %s.%s is NOT NULL, not nullable", table, name))
			}
		}
		for _, name := range needs.dropped[table] {
			if _, ok := have[name]; ok {
				problems = append(problems, fmt.Sprintf("column %s.%s is still there", table, name))
			}
		}
	}

	for _, ix := range needs.indexes {
		rows, err := q("SELECT non_unique, column_name FROM information_schema.statistics WHERE "+inSchema+" AND table_name = ? AND index_name = ? ORDER BY seq_in_index",
			ix.table, ix.name)
		if err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		var cols []string
		unique := true
		for rows.Next() {
			var nonUnique int
			var col string
			if err := rows.Scan(&nonUnique, &col); err != nil {
				rows.Close()
				return s.wrap("migrate: read the schema", err)
			}
			cols, unique = append(cols, strings.ToLower(col)), nonUnique == 0
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		switch got := strings.Join(cols, ","); {
		case got == "":
			problems = append(problems, fmt.Sprintf("index %s of %s is missing", ix.name, ix.table))
		case got != ix.columns || unique != ix.unique:
			problems = append(problems, fmt.Sprintf("index %s of %s is %s, not %s", ix.name, ix.table,
				describeIndex(got, unique), describeIndex(ix.columns, ix.unique)))
		}
	}

	for _, st := range m.stmts {
		want := createsTrigger.FindStringSubmatch(withoutComments(st))
		if want == nil {
			continue
		}
		name := baseName(want[1])
		rows, err := q("SELECT action_timing, event_manipulation, event_object_table, action_statement FROM information_schema.triggers WHERE "+
			strings.ReplaceAll(inSchema, "table_schema", "trigger_schema")+" AND trigger_name = ?", name)
		if err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		found := false
		var timing, event, table, body string
		for rows.Next() {
			found = true
			if err := rows.Scan(&timing, &event, &table, &body); err != nil {
				rows.Close()
				return s.wrap("migrate: read the schema", err)
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		switch {
		case !found:
			problems = append(problems, fmt.Sprintf("trigger %s is missing", name))
		case !strings.EqualFold(timing, want[2]) || !strings.EqualFold(event, want[3]) || !strings.EqualFold(table, baseName(want[4])) ||
			strings.Join(strings.Fields(body), " ") != strings.Join(strings.Fields(want[5]), " "):
			problems = append(problems, fmt.Sprintf("trigger %s is not the migration's (%s %s on %s, another body)", name, timing, event, table))
		}
	}

	if len(problems) > 0 {
		return fmt.Errorf("%w: %w: migrate %s to version %d: %s; the version is not recorded: "+
			"restore the objects usersync made (see the package README's schema), or give usersync a table of its own (sqlstore.Config.Table)",
			usersync.ErrInvalid, ErrSchemaMismatch, s.table, m.version, strings.Join(problems, "; "))
	}
	return nil
}

// describeIndex describes an index for an error: "unique (a,b)".
func describeIndex(columns string, unique bool) string {
	if unique {
		return "unique (" + columns + ")"
	}
	return "(" + columns + ")"
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// mysqlErr classifies an error of go-sql-driver/mysql by its number: 1213
// (a deadlock, and how a Galera cluster reports a certification conflict
// with a write committed on another node) and 1205 (a lock wait timeout,
// which rolls back the statement alone) ask for the statement to be run
// again; 1062 is a taken key; the numbers of a value the column cannot
// hold are a refused value.
func mysqlErr(err error) (errKind, string) {
	switch n := mysqlNumber(err); n {
	case 1213, 1205:
		return errRetry, strconv.Itoa(n)
	case 1064:
		// A Galera node that opens a table while it applies another
		// node's CREATE TRIGGER of it can read the trigger half made
		// ("Unknown trigger has an error in its body: 'Query was
		// empty'"); and under the certification conflicts of writes
		// on several nodes at once, MariaDB 10.11 was seen to fail the
		// parse of a trigger's body at a different token each time
		// ("Trigger 'users_org_upd' has an error in its body: 'You
		// have an error in your SQL syntax; ... near 'END, ...'"),
		// after the same trigger had fired on that node. Either comes
		// of opening the table, before the statement changed anything:
		// the next attempt opens it again. Usersync's triggers parse
		// (Migrate made them), so one that fails every attempt is
		// returned. Any other 1064 is a syntax error.
		if _, msg := mysqlError(err); strings.HasPrefix(msg, "Unknown trigger has an error in its body") ||
			strings.HasPrefix(msg, "Trigger '") && strings.Contains(msg, "' has an error in its body") {
			return errRetry, strconv.Itoa(n)
		}
		return errOther, ""
	case 1062:
		return errKeyTaken, strconv.Itoa(n)
	case 1264, // out of range
		1300, // invalid string for the character set
		1366, // incorrect string value
		1406, // data too long
		3140, // invalid JSON text (MySQL)
		4025, // CHECK failed: MariaDB's JSON is LONGTEXT CHECK (json_valid(...))
		4038, // JSON syntax error (MariaDB)
		4040: // JSON too deep (MariaDB)
		return errRefused, strconv.Itoa(n)
	}
	return errOther, ""
}

// mysqlNumber returns the error number of a MySQL or MariaDB error in
// err's tree (errors.Join included), or 0. It reads the driver's
// MySQLError by reflection, without importing the driver.
func mysqlNumber(err error) int {
	if err == nil {
		return 0
	}
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct && v.Type().Name() == "MySQLError" {
		if f := v.FieldByName("Number"); f.IsValid() && f.CanUint() {
			return int(f.Uint())
		}
	}
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		return mysqlNumber(e.Unwrap())
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			if n := mysqlNumber(inner); n != 0 {
				return n
			}
		}
	}
	return 0
}

// mysqlError returns the number and message of a MySQL or MariaDB error
// in err's chain, or 0 and "".
func mysqlError(err error) (int, string) {
	n := mysqlNumber(err)
	if n == 0 {
		return 0, ""
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct && v.Type().Name() == "MySQLError" {
			if f := v.FieldByName("Message"); f.IsValid() && f.Kind() == reflect.String {
				return n, f.String()
			}
		}
	}
	return n, ""
}
