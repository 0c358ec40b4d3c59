package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/usersync/usersync"
)

// batchRows is how many rows one multi-row upsert writes: well under every
// dialect's limit of bind parameters.
const batchRows = 250

// upsertBatch implements the UpsertBatch of usersync.Store in one transaction, with one
// multi-row statement per 250 writes (SQLite, PostgreSQL: INSERT ... ON
// CONFLICT ... RETURNING; MySQL: a locking read of the rows, INSERT ... ON
// DUPLICATE KEY UPDATE, and a read-back of the users that changed).
//
// A write whose value the database refuses though Validate takes it (a
// value Validate cannot foresee: a database of another version, a CHECK
// or trigger of the app's) is applied without its metadata, as Upsert
// does, if that was the value; a write the database still refuses is
// skipped, and the others applied: its outcome is Stale, its user the zero
// User, and the error returned beside the outcomes joins a
// *usersync.WriteError per skipped write, wrapping usersync.ErrInvalid
// (the database's code, never the value). Any other failure fails the
// whole batch, which changes nothing. The refused write is found only
// after a refusal: the batch runs again, each statement under a savepoint
// and a refused one row by row.
func (s *Store) upsertBatch(ctx context.Context, ws []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	ws = slices.Clone(ws) // Validate rewrites metadata: not the caller's
	for i := range ws {
		if err := ws[i].Validate(); err != nil {
			return nil, nil, fmt.Errorf("write %d: %w", i, err)
		}
	}
	users := make([]usersync.User, len(ws))
	outcomes := make([]usersync.Outcome, len(ws))
	if len(ws) == 0 {
		return users, outcomes, nil
	}
	if len(ws) >= batchRows {
		// Prepared outside the transaction: a pool of one connection
		// (SQLite) has none to spare inside it.
		if err := s.prepareFullChunk(ctx); err != nil {
			return nil, nil, err
		}
	}
	careful := false // after a refusal: find the refused writes
	var skipped []error
	run := func() error {
		clear(users) // from an attempt that rolled back
		clear(outcomes)
		skipped = skipped[:0]
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		// Writes of one token identifier go in separate rounds, in order:
		// one statement may not change a row twice.
		for _, round := range rounds(ws) {
			for start := 0; start < len(round); start += batchRows {
				chunk := round[start:min(start+batchRows, len(round))]
				if careful {
					err = s.upsertRowsCarefully(ctx, tx, ws, chunk, users, outcomes, &skipped)
				} else {
					err = s.upsertRows(ctx, tx, ws, chunk, users, outcomes)
				}
				if err != nil {
					return err
				}
			}
		}
		return tx.Commit()
	}
	attempts, err := s.try(ctx, run)
	if err != nil && refusedValue(err) {
		careful = true
		var more int
		more, err = s.try(ctx, run)
		attempts += more
	}
	if err != nil {
		return nil, nil, s.wrapN("upsert batch", attempts, err)
	}
	return users, outcomes, errors.Join(skipped...)
}

// upsertRowsCarefully is upsertRows under a savepoint of tx: if the
// database refuses a value, it rolls the chunk back and upserts its writes
// one at a time, skipping (Stale, with an error in *skipped) each one the
// database refuses.
func (s *Store) upsertRowsCarefully(ctx context.Context, tx *sql.Tx, ws []usersync.Write, idx []int, users []usersync.User, outcomes []usersync.Outcome, skipped *[]error) error {
	err := s.underSavepoint(ctx, tx, func() error { return s.upsertRows(ctx, tx, ws, idx, users, outcomes) })
	if err == nil || !refusedValue(err) {
		return err
	}
	for _, i := range idx {
		users[i], outcomes[i] = usersync.User{}, usersync.Stale
	}
	for _, i := range idx {
		row := func() error { return s.upsertRows(ctx, tx, ws, []int{i}, users, outcomes) }
		err := s.underSavepoint(ctx, tx, row)
		if err != nil && refusedValue(err) && ws[i].Profile.Metadata != nil {
			// As Upsert does: the rest of the write without its metadata.
			first := refused(s.wrap("upsert batch", err))
			carried := ws[i].Fields&usersync.FieldMetadata != 0
			ws[i].Fields &^= usersync.FieldMetadata
			ws[i].Profile.Metadata = nil
			if err = s.underSavepoint(ctx, tx, row); err == nil {
				s.log.WarnContext(ctx, "usersync/sqlstore: the database refused the metadata of a write; dropped it and applied the rest",
					"field", "metadata", "carried", carried, "table", s.table.String(), "write", i, "code", first.code)
			}
		}
		if err != nil && !refusedValue(err) {
			return err
		}
		if err != nil {
			users[i], outcomes[i] = usersync.User{}, usersync.Stale
			*skipped = append(*skipped, &usersync.WriteError{Index: i, Err: s.wrap("upsert batch", err)})
		}
	}
	return nil
}

// underSavepoint runs f under a savepoint of tx, and rolls back to it if f
// fails.
func (s *Store) underSavepoint(ctx context.Context, tx *sql.Tx, f func() error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT usersync_batch"); err != nil {
		return err
	}
	if err := f(); err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT usersync_batch"); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT usersync_batch")
	return err
}

// rounds splits the indexes of ws into rounds in which every token
// identifier appears once, keeping the order of writes of one identifier.
func rounds(ws []usersync.Write) [][]int {
	seen := make(map[string]int, len(ws))
	var out [][]int
	for i := range ws {
		r := seen[ws[i].TokenIdentifier]
		seen[ws[i].TokenIdentifier] = r + 1
		if r == len(out) {
			out = append(out, nil)
		}
		out[r] = append(out[r], i)
	}
	return out
}

// upsertRows upserts ws[i] for i in idx (distinct token identifiers) in
// one statement, and fills their users and outcomes.
func (s *Store) upsertRows(ctx context.Context, tx *sql.Tx, ws []usersync.Write, idx []int, users []usersync.User, outcomes []usersync.Outcome) error {
	d := s.dialect
	args := make([]any, 0, len(idx)*len(insertColumns))
	for _, i := range idx {
		w := &ws[i]
		args = insertArgs(args, d, w, w.Fields, w.At, w.At, zeroTime)
	}
	upsert, err := s.batchStmt(ctx, tx, s.upsertManySQL(len(idx)), len(idx))
	if err != nil {
		return err
	}

	byKey := make(map[string]int, len(idx)) // token identifier -> index in ws
	for _, i := range idx {
		byKey[ws[i].TokenIdentifier] = i
	}
	if d.returning {
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
			users[i], outcomes[i] = u, usersync.Updated
			if changes == 1 { // the insert: an update raises it above 1
				outcomes[i] = usersync.Created
			}
		}
		return errors.Join(rows.Err(), rows.Close())
	}

	// MySQL: the outcomes come from the rows as they were, read with a
	// lock (which also keeps other writers of the same keys out until
	// commit), and the users from a read after the write.
	before, err := s.readRows(ctx, tx, ws, idx)
	if err != nil {
		return err
	}
	var changed []any
	for _, i := range idx {
		w := &ws[i]
		old, ok := before[w.TokenIdentifier]
		switch {
		case !ok:
			outcomes[i] = usersync.Created
		case old.deleted || !old.newer(w):
			outcomes[i] = usersync.Stale
			continue
		default:
			outcomes[i] = usersync.Updated
		}
		changed = append(changed, w.TokenIdentifier)
	}
	if _, err := upsert.ExecContext(ctx, args...); err != nil {
		return err
	}
	if len(changed) == 0 {
		return nil
	}
	get, err := s.batchStmt(ctx, tx, s.sql.getByTokensPrefix+inList(d, len(changed))+")", len(changed))
	if err != nil {
		return err
	}
	rows, err := get.QueryContext(ctx, changed...)
	if err != nil {
		return err
	}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			rows.Close()
			return err
		}
		i := byKey[u.TokenIdentifier]
		if outcomes[i] == usersync.Created && u.ID != ws[i].ID {
			rows.Close()
			return fmt.Errorf("%w: usersync/sqlstore: upsert batch %s: the ID is taken by another user", usersync.ErrInvalid, s.table)
		}
		users[i] = u
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, i := range idx {
		if outcomes[i] != usersync.Stale && users[i].ID == "" {
			// ON DUPLICATE KEY UPDATE met another user's ID, and the
			// guarded update left that row alone: nothing was stored.
			return fmt.Errorf("%w: usersync/sqlstore: upsert batch %s: the ID is taken by another user", usersync.ErrInvalid, s.table)
		}
	}
	return nil
}

// upsertManySQL returns the upsert of n rows.
func (s *Store) upsertManySQL(n int) string {
	d := s.dialect
	var q strings.Builder
	fmt.Fprintf(&q, "INSERT INTO %s (%s) VALUES ", s.table.quoted(d), strings.Join(insertColumns, ", "))
	for r := range n {
		if r > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('(')
		for c := range insertColumns {
			if c > 0 {
				q.WriteString(", ")
			}
			q.WriteString(d.placeholder(r*len(insertColumns) + c + 1))
		}
		q.WriteByte(')')
	}
	q.WriteByte(' ')
	q.WriteString(s.sql.upsertSet)
	return q.String()
}

// fullChunkQueries returns the statements of a full chunk (batchRows
// rows), whose parsing costs as much as a tenth of the batch.
func (s *Store) fullChunkQueries() []string {
	if s.dialect.returning {
		return []string{s.upsertManySQL(batchRows)}
	}
	return []string{s.upsertManySQL(batchRows), s.readRowsSQL(batchRows), s.sql.getByTokensPrefix + inList(s.dialect, batchRows) + ")"}
}

// readRowsSQL returns the locking read of n rows' versions by token
// identifier (MySQL).
func (s *Store) readRowsSQL(n int) string {
	return s.sql.lockPrefix + inList(s.dialect, n) + ") FOR UPDATE"
}

// prepareFullChunk prepares the statements of a full chunk, once per
// store.
func (s *Store) prepareFullChunk(ctx context.Context) error {
	for _, q := range s.fullChunkQueries() {
		if _, err := s.stmt(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// batchStmt returns query, of rows rows, as a statement of tx: one that
// prepareFullChunk prepared for a full chunk, else prepared for this use.
func (s *Store) batchStmt(ctx context.Context, tx *sql.Tx, query string, rows int) (*sql.Stmt, error) {
	if rows == batchRows {
		if st, ok := s.stmts.Load(query); ok {
			return tx.StmtContext(ctx, st.(*sql.Stmt)), nil
		}
	}
	return tx.PrepareContext(ctx, query)
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

// readRows reads the rows of the writes' token identifiers FOR UPDATE
// (MySQL).
func (s *Store) readRows(ctx context.Context, tx *sql.Tx, ws []usersync.Write, idx []int) (map[string]rowVersions, error) {
	keys := make([]any, len(idx))
	for n, i := range idx {
		keys[n] = ws[i].TokenIdentifier
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
