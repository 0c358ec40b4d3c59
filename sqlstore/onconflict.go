package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

// onConflict is how SQLite and PostgreSQL write: each write is one INSERT
// ... ON CONFLICT ... DO UPDATE ... WHERE ... RETURNING, which returns the
// row it wrote, or none when the WHERE clause left the stored row alone.
// The row's change_count tells an insert (1) from an update, which raises
// it.
var onConflict = writes{
	statements:   onConflictStatements,
	write:        (*Store).writeOnConflict,
	upsertChunk:  (*Store).upsertChunkOnConflict,
	chunkQueries: func(*Store, int) []string { return nil },
	acquire:      (*Store).acquireOnConflict,
	renewed: func(_ *Store, _ context.Context, _, _ string, n int64) (bool, error) {
		return n == 1, nil
	},
}

// onConflictStatements fills in the writes of table t (see writes).
func onConflictStatements(d *dialect, table tableName, insert, cols string, q *statements) {
	t := table.quoted(d)
	// SET expressions and WHERE see the stored row as t and the proposed
	// one as excluded.
	var set, newer []string
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
	q.upsertSet = fmt.Sprintf("ON CONFLICT (token_identifier) DO UPDATE SET %s WHERE %s.deleted_at IS NULL AND (%s) RETURNING %s",
		strings.Join(set, ", "), t, strings.Join(newer, " OR "), cols)
	q.upsert = insert + " " + q.upsertSet

	var clear []string
	for _, pc := range cleared() {
		for _, c := range pc.names() {
			clear = append(clear, fmt.Sprintf("%s = excluded.%s", c, c))
		}
	}
	clear = append(clear, "updated_at = excluded.updated_at", "deleted_at = excluded.deleted_at", fmt.Sprintf("change_count = %s.change_count + 1", t))
	q.tombstone = fmt.Sprintf("%s ON CONFLICT (token_identifier) DO UPDATE SET %s WHERE %s.deleted_at IS NULL RETURNING %s",
		insert, strings.Join(clear, ", "), t, cols)

	p, leases := d.placeholder, table.qualified(d, "leases")
	q.acquire = fmt.Sprintf(`INSERT INTO %[1]s (name, holder, expires_at, cursor_pos) VALUES (%[2]s, %[3]s, %[4]s, 0)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE %[1]s.holder = excluded.holder OR %[1]s.expires_at < %[5]s RETURNING cursor_pos`, leases, p(1), p(2), p(3), p(4))
}

// onConflictReplace is the replace of orgDialect for SQLite and
// PostgreSQL: ON CONFLICT on the primary key, every other column from
// excluded.
func onConflictReplace(keys, cols []string) string {
	var set []string
	for _, c := range cols {
		if !slices.Contains(keys, c) {
			set = append(set, c+" = excluded."+c)
		}
	}
	return "ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
}

// writeOnConflict is the write of writes.
func (s *Store) writeOnConflict(ctx context.Context, tx *sql.Tx, op, query string, w *usersync.Write, fields usersync.Fields, deleted time.Time, changed usersync.Outcome) (usersync.User, usersync.Outcome, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	args := insertArgs(make([]any, 0, len(insertColumns)), s.dialect, w, fields, w.At, w.At, deleted)
	var u usersync.User
	var changes int64
	attempts, err := s.run(ctx, tx, func() (err error) {
		u, changes, err = scanRow(in(ctx, tx, st).QueryRowContext(ctx, args...))
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
	u, err = s.queryUserIn(ctx, tx, op, s.sql.getByToken, w.TokenIdentifier)
	return u, usersync.Stale, err
}

// upsertChunkOnConflict is the upsertChunk of writes: the statement
// returns the rows it wrote.
func (s *Store) upsertChunkOnConflict(ctx context.Context, _ *sql.Tx, upsert *sql.Stmt, args []any, c chunk) error {
	byKey := c.byKey()
	rows, err := upsert.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		u, changes, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return err
		}
		i := byKey[u.TokenIdentifier]
		c.users[i], c.outcomes[i] = u, usersync.Updated
		if changes == 1 { // the insert: an update raises it above 1
			c.outcomes[i] = usersync.Created
		}
	}
	return errors.Join(rows.Err(), rows.Close())
}

// acquireOnConflict is the acquire of writes: the statement returns the
// cursor of a lease it took, and no row for a lease held by another.
func (s *Store) acquireOnConflict(ctx context.Context, name, holder string, expires, at int64) (int64, bool, error) {
	var cursor int64
	err := s.db.QueryRowContext(ctx, s.sql.acquire, name, holder, expires, at).Scan(&cursor)
	if errors.Is(err, sql.ErrNoRows) { // held by another
		return 0, false, nil
	}
	return cursor, err == nil, err
}
