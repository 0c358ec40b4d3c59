package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

// postgresDialect is PostgreSQL: transactions commit out of the order of
// the change feed's ids, so a change's seq is assigned after it committed
// (feed.go); each migration is one transaction; times are TIMESTAMPTZ.
var postgresDialect = &dialect{
	name:   "postgres",
	system: "postgresql",
	// Doubling quotes matters only for the name of a schema read from the
	// database (Migrate's of an unqualified table).
	quote:       func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` },
	placeholder: func(n int) string { return fmt.Sprintf("$%d", n) },
	// PostgreSQL types the parameters of a CASE as text.
	bigint:        func(n int) string { return fmt.Sprintf("$%d::bigint", n) },
	timeArg:       utc,
	emailVerified: `(email_verified AND (email_verified_for IS NULL OR email_verified_for = email COLLATE "C"))`,
	writes:        onConflict,
	orgs:          orgDialect{forUpdate: " FOR UPDATE", replace: onConflictReplace, lockKeys: (*Store).postgresLockKeys},
	// clock_timestamp() is the time as the statement runs (now() would be
	// the transaction's start), cut to the millisecond: its epoch times
	// 1000 is then a whole number, exact in extract's numeric (PostgreSQL
	// 14 on), and rounded back to it by the cast from an older one's
	// double. The partial unique indexes of an ending's key (migration 8)
	// raise the conflicts that DO NOTHING skips; any other error stands.
	sessions: sessionDialect{
		now:  "(extract(epoch FROM pg_catalog.date_trunc('milliseconds', pg_catalog.clock_timestamp())) * 1000)::bigint",
		keep: "ON CONFLICT DO NOTHING",
	},

	leaseCursors: "SELECT name, cursor_pos FROM %s WHERE starts_with(name, $1)",
	leasePrefix:  func(prefix string) []any { return []any{prefix} },
	prune:        "DELETE FROM %[1]s WHERE seq <= $1 AND at < $2",
	sequence:     (*Store).sequence,

	schemaDir:        "schema/postgres",
	createMigrations: "CREATE TABLE IF NOT EXISTS %s (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
	tableExists:      "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = $1 AND table_schema = CASE WHEN $2 = '' THEN current_schema() ELSE $3 END",
	lock: func(ctx context.Context, conn *sql.Conn, t tableName) error {
		_, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock("+postgresLockKey(t)+")")
		return err
	},
	unlock: func(ctx context.Context, conn *sql.Conn, t tableName, _ bool) error {
		_, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock("+postgresLockKey(t)+")")
		return err
	},
	migrationTable: (*Store).postgresTable,
	apply:          (*Store).applyPostgres,
}

// postgresLockKey is the key of Migrate's advisory lock: a hash of the
// table's name.
func postgresLockKey(t tableName) string {
	h := fnv.New64a()
	h.Write([]byte("usersync:" + t.String()))
	return strconv.FormatInt(int64(h.Sum64()>>1), 10)
}

// postgresTable returns the store's table qualified with its schema: a
// qualified table's own, or for an unqualified one the schema the
// search_path finds it in, or, for a new table, the first schema of the
// search_path (where CREATE TABLE puts it).
func (s *Store) postgresTable(ctx context.Context, conn *sql.Conn) (tableName, error) {
	if s.table.schema != "" {
		return s.table, nil
	}
	var schema sql.NullString
	err := conn.QueryRowContext(ctx, `SELECT COALESCE((SELECT n.nspname FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass($1)), pg_catalog.current_schema())`,
		s.table.quoted(s.dialect)).Scan(&schema)
	if err != nil {
		return tableName{}, s.wrap("migrate: find the table's schema", err)
	}
	// A "$" could end the dollar quotes of a function body.
	if !schema.Valid || schema.String == "" || strings.ContainsAny(schema.String, "$\x00") {
		return tableName{}, fmt.Errorf("%w: usersync/sqlstore: migrate %s: the search_path names no schema usersync can use: "+
			"qualify the store's Table with its schema, such as %q", usersync.ErrInvalid, s.table, "app."+s.table.base)
	}
	return tableName{schema: schema.String, base: s.table.base}, nil
}

// applyPostgres applies m and records its version in one transaction of
// conn, run again whole when the database asks. The transaction's
// search_path puts pg_catalog first and then the table's schema (the
// files' own names are qualified): a schema of the session's search_path
// cannot stand in for a type or function of pg_catalog.
func (s *Store) applyPostgres(ctx context.Context, conn *sql.Conn, op, mt string, table tableName, m migration) error {
	attempts, err := s.try(ctx, func() error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		// Recorded first, while the session's search_path finds mt.
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+mt+" (applied_at, version) VALUES ($1, $2)", time.Now().UnixMilli(), m.version); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "SET LOCAL search_path TO pg_catalog, "+s.dialect.quote(table.schema)+", pg_temp"); err != nil {
			return err
		}
		for _, st := range m.stmts {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return s.wrapN(op, attempts, err)
	}
	return nil
}

// keyBuckets is how many advisory locks (per table) the keys of
// postgresLockKeys fall into: a batch takes at most this many, whatever
// its size, and two writes of unrelated keys wait for each other rarely.
const keyBuckets = 1024

// postgresLockKeys is the lockKeys of PostgreSQL: a transaction advisory
// lock on the bucket of each key, in the order of the buckets, in one
// statement. (Its two-int4 keys never meet Migrate's bigint one.) A
// membership write takes them first, the delete of an organization or a
// user before it ends their memberships: whichever comes second waits
// for the first to commit, and its next statement sees what it wrote.
func (s *Store) postgresLockKeys(ctx context.Context, tx *sql.Tx, keys []string) error {
	buckets := make([]int64, 0, len(keys))
	for _, k := range keys {
		h := fnv.New32a()
		h.Write([]byte(k))
		buckets = append(buckets, int64(h.Sum32()%keyBuckets))
	}
	slices.Sort(buckets)
	buckets = slices.Compact(buckets)
	h := fnv.New32a()
	h.Write([]byte("usersync-orgs:" + s.table.String()))
	args := append(make([]any, 0, len(buckets)+1), int64(int32(h.Sum32())))
	var q strings.Builder
	q.WriteString("SELECT COUNT(pg_catalog.pg_advisory_xact_lock($1::int4, v.b)) FROM (VALUES ")
	for i, b := range buckets {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "($%d::int4)", i+2)
		args = append(args, b)
	}
	q.WriteString(") v(b)")
	_, err := tx.ExecContext(ctx, q.String(), args...)
	return err
}

// postgresErr classifies an error of pgx or lib/pq by its SQLSTATE:
// 40001 (a serialization failure: SERIALIZABLE isolation, distributed
// engines) and 40P01 (a deadlock) ask for the statement to be run again;
// 23505 is a taken key; class 22 (data exception: encoding, range,
// JSON, ...) a refused value.
func postgresErr(err error) (errKind, string) {
	var e interface{ SQLState() string }
	if !errors.As(err, &e) {
		return errOther, ""
	}
	switch code := e.SQLState(); {
	case code == "40001", code == "40P01":
		return errRetry, code
	case code == "23505":
		return errKeyTaken, code
	case strings.HasPrefix(code, "22"):
		return errRefused, code
	}
	return errOther, ""
}
