package sqlstore

import (
	"fmt"
	"slices"
	"strings"
	"time"
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

// dialect is what differs between databases: every difference lives in
// this file, so the Store itself has one code path.
type dialect struct {
	name string
	// quote quotes a validated identifier.
	quote func(string) string
	// placeholder returns the n-th (1-based) bind parameter.
	placeholder func(n int) string
	// returning is true where INSERT ... ON CONFLICT ... RETURNING exists;
	// otherwise writes use ON DUPLICATE KEY UPDATE and the affected-row count.
	returning bool
	// lock and unlock serialise Migrate across replicas; %s is a key.
	lock, unlock string
	// lockReportsSuccess is true where lock returns 1 on success (MySQL's
	// GET_LOCK returns 0 on timeout instead of failing).
	lockReportsSuccess bool
	// schemaDir is the folder of embedded migrations.
	schemaDir string
	// createMigrations creates the migrations table; %s is its name.
	createMigrations string
	// timeArg is the argument that writes a time: Unix milliseconds in
	// SQLite, the time in UTC elsewhere; NULL for the zero time.
	timeArg func(time.Time) any
	// tableExists is a query of one row, 1 or 0: does table $1 exist (in
	// schema $2, or the current one when $2 is "")?
	tableExists string
	// emailVerified is what a read returns as email_verified: the flag,
	// while the stored email is the address it came with
	// (email_verified_for, NULL for any), compared byte for byte.
	emailVerified string
}

func millis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func utc(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

var dialects = [...]*dialect{
	SQLite: {
		name:             "sqlite",
		quote:            func(s string) string { return `"` + s + `"` },
		placeholder:      func(int) string { return "?" },
		returning:        true,
		lock:             "BEGIN IMMEDIATE",
		unlock:           "COMMIT",
		schemaDir:        "schema/sqlite",
		createMigrations: "CREATE TABLE IF NOT EXISTS %s (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
		timeArg:          millis,
		// SQLite's names are case-insensitive: "Users" is "users".
		tableExists: "SELECT COUNT(*) FROM pragma_table_list WHERE name = ? COLLATE NOCASE AND (? = '' OR schema = ? COLLATE NOCASE)",
		// = is binary in SQLite.
		emailVerified: "(email_verified AND (email_verified_for IS NULL OR email_verified_for = email))",
	},
	Postgres: {
		name: "postgres",
		// Doubling quotes matters only for the name of a schema read
		// from the database (Migrate's of an unqualified table).
		quote:            func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` },
		placeholder:      func(n int) string { return fmt.Sprintf("$%d", n) },
		returning:        true,
		lock:             "SELECT pg_advisory_lock(%s)",
		unlock:           "SELECT pg_advisory_unlock(%s)",
		schemaDir:        "schema/postgres",
		createMigrations: "CREATE TABLE IF NOT EXISTS %s (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
		timeArg:          utc,
		tableExists:      "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = $1 AND table_schema = CASE WHEN $2 = '' THEN current_schema() ELSE $3 END",
		emailVerified:    `(email_verified AND (email_verified_for IS NULL OR email_verified_for = email COLLATE "C"))`,
	},
	MySQL: {
		name:               "mysql",
		quote:              func(s string) string { return "`" + s + "`" },
		placeholder:        func(int) string { return "?" },
		returning:          false,
		lock:               "SELECT GET_LOCK(%s, 60)",
		lockReportsSuccess: true,
		unlock:             "SELECT RELEASE_LOCK(%s)",
		schemaDir:          "schema/mysql",
		createMigrations:   "CREATE TABLE IF NOT EXISTS %s (version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL) ENGINE=InnoDB",
		timeArg:            utc,
		tableExists:        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = IF(? = '', DATABASE(), ?)",
		// Binary strings: no collation, no padding.
		emailVerified: "(email_verified AND (email_verified_for IS NULL OR CAST(email_verified_for AS BINARY) = CAST(email AS BINARY)))",
	},
}

// statements are one table's SQL in one dialect.
type statements struct {
	upsert, tombstone   string
	getByID, getByToken string
	getByExternalID     string
	list, count         string
	getManyPrefix       string
	// upsertSet is the ON CONFLICT / ON DUPLICATE KEY part of upsert, for
	// the multi-row upserts of UpsertBatch; getByTokensPrefix and
	// lockPrefix (MySQL) read rows by a list of token identifiers.
	upsertSet, getByTokensPrefix, lockPrefix string
	// Leases: acquire (returns the cursor when taken), holder (MySQL: who
	// holds it after acquire), renew and release.
	acquire, holder, renew, release string
}

func (d *dialect) statements(table tableName) statements {
	t := table.quoted(d)
	var ph []string
	for i := 1; i <= len(insertColumns); i++ {
		ph = append(ph, d.placeholder(i))
	}
	insert := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", t, strings.Join(insertColumns, ", "), strings.Join(ph, ", "))
	read := slices.Clone(userColumns)
	read[slices.Index(read, "email_verified")] = d.emailVerified
	cols := strings.Join(read, ", ")
	s := statements{
		getByID:       fmt.Sprintf("SELECT %s FROM %s WHERE id = %s", cols, t, d.placeholder(1)),
		getByToken:    fmt.Sprintf("SELECT %s FROM %s WHERE token_identifier = %s", cols, t, d.placeholder(1)),
		list:          fmt.Sprintf("SELECT %s FROM %s WHERE id > %s AND deleted_at IS NULL ORDER BY id LIMIT %s", cols, t, d.placeholder(1), d.placeholder(2)),
		count:         fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE deleted_at IS NULL", t),
		getManyPrefix: fmt.Sprintf("SELECT %s FROM %s WHERE deleted_at IS NULL AND id IN (", cols, t),
		getByExternalID: fmt.Sprintf("SELECT %s FROM %s WHERE issuer = %s AND external_id = %s AND deleted_at IS NULL ORDER BY updated_at DESC, id LIMIT 1",
			cols, t, d.placeholder(1), d.placeholder(2)),
	}
	s.leaseStatements(d, table.qualified(d, "leases"))
	s.getByTokensPrefix = fmt.Sprintf("SELECT %s FROM %s WHERE token_identifier IN (", cols, t)
	var versions []string
	for _, pc := range profileColumns {
		versions = append(versions, pc.version)
	}
	s.lockPrefix = fmt.Sprintf("SELECT token_identifier, deleted_at, %s FROM %s WHERE token_identifier IN (", strings.Join(versions, ", "), t)
	var set, newer []string
	if d.returning {
		// INSERT ... ON CONFLICT: SET expressions and WHERE see the stored
		// row as t and the proposed one as excluded.
		for _, pc := range profileColumns {
			cond := fmt.Sprintf("excluded.%s > %s.%s", pc.version, t, pc.version)
			newer = append(newer, cond)
			for _, c := range append(pc.names(), pc.version) {
				set = append(set, fmt.Sprintf("%s = CASE WHEN %s THEN excluded.%s ELSE %s.%s END", c, cond, c, t, c))
			}
		}
		set = append(set,
			fmt.Sprintf("version = CASE WHEN excluded.version > %s.version THEN excluded.version ELSE %s.version END", t, t),
			"updated_at = excluded.updated_at",
			fmt.Sprintf("change_count = %s.change_count + 1", t))
		s.upsertSet = fmt.Sprintf("ON CONFLICT (token_identifier) DO UPDATE SET %s WHERE %s.deleted_at IS NULL AND (%s) RETURNING %s",
			strings.Join(set, ", "), t, strings.Join(newer, " OR "), cols)
		s.upsert = insert + " " + s.upsertSet

		var clear []string
		for _, pc := range profileColumns {
			for _, c := range pc.names() {
				clear = append(clear, fmt.Sprintf("%s = excluded.%s", c, c))
			}
		}
		clear = append(clear, "updated_at = excluded.updated_at", "deleted_at = excluded.deleted_at", fmt.Sprintf("change_count = %s.change_count + 1", t))
		s.tombstone = fmt.Sprintf("%s ON CONFLICT (token_identifier) DO UPDATE SET %s WHERE %s.deleted_at IS NULL RETURNING %s",
			insert, strings.Join(clear, ", "), t, cols)
		return s
	}

	// ON DUPLICATE KEY UPDATE assigns left to right and later expressions
	// see earlier assignments, so the row-level columns come first, while
	// every field version still holds its stored value, and each field's
	// value comes before its version. It also fires on a duplicate primary
	// key, so every change is guarded by "same token identifier": a write
	// whose new ID collides with another user's row leaves that row alone.
	const mine = "token_identifier = VALUES(token_identifier) AND deleted_at IS NULL"
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
	s.upsertSet = "ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
	s.upsert = insert + " " + s.upsertSet

	clear := []string{"change_count = IF(" + mine + ", change_count + 1, change_count)"} // first: it sees deleted_at as it was
	for _, pc := range profileColumns {
		for _, c := range pc.names() {
			clear = append(clear, fmt.Sprintf("%s = IF(%s, VALUES(%s), %s)", c, mine, c, c))
		}
	}
	clear = append(clear,
		"updated_at = IF("+mine+", VALUES(updated_at), updated_at)",
		"deleted_at = IF("+mine+", VALUES(deleted_at), deleted_at)")
	s.tombstone = fmt.Sprintf("%s ON DUPLICATE KEY UPDATE %s", insert, strings.Join(clear, ", "))
	return s
}

// leaseStatements fill the lease statements: leases is the quoted table.
// A lease row stays when released (expires_at 0), keeping its cursor.
func (s *statements) leaseStatements(d *dialect, leases string) {
	p := d.placeholder
	s.renew = fmt.Sprintf("UPDATE %s SET expires_at = %s, cursor_pos = %s WHERE name = %s AND holder = %s", leases, p(1), p(2), p(3), p(4))
	s.release = fmt.Sprintf("UPDATE %s SET expires_at = 0 WHERE name = %s AND holder = %s", leases, p(1), p(2))
	if d.returning {
		s.acquire = fmt.Sprintf(`INSERT INTO %[1]s (name, holder, expires_at, cursor_pos) VALUES (%[2]s, %[3]s, %[4]s, 0)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE %[1]s.holder = excluded.holder OR %[1]s.expires_at < %[5]s RETURNING cursor_pos`, leases, p(1), p(2), p(3), p(4))
		return
	}
	// holder is assigned first: expires_at then sees whether it was taken.
	s.acquire = fmt.Sprintf(`INSERT INTO %s (name, holder, expires_at, cursor_pos) VALUES (?, ?, ?, 0)
		ON DUPLICATE KEY UPDATE holder = IF(holder = VALUES(holder) OR expires_at < ?, VALUES(holder), holder),
		expires_at = IF(holder = VALUES(holder), VALUES(expires_at), expires_at)`, leases)
	s.holder = fmt.Sprintf("SELECT holder, cursor_pos FROM %s WHERE name = ?", leases)
}
