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

// UpsertBatch implements usersync.Store in one transaction, with one
// multi-row statement per 250 writes (SQLite, PostgreSQL: INSERT ... ON
// CONFLICT ... RETURNING; MySQL: a locking read of the rows, INSERT ... ON
// DUPLICATE KEY UPDATE, and a read-back of the users that changed).
//
// A write whose metadata the database refuses though Validate takes it is
// applied without it, as Upsert does; a write the database still refuses
// is skipped and the others applied: its outcome is Stale, its user the
// zero User, and the error returned beside the outcomes joins a
// *usersync.WriteError wrapping usersync.ErrInvalid per skipped write,
// without the value. Any other failure fails the whole batch, which then
// changes nothing.
func (s *Store) UpsertBatch(ctx context.Context, ws []usersync.Write) (users []usersync.User, outcomes []usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsertBatch)
	defer op.finish(ctx, &err)
	ws = slices.Clone(ws) // Validate rewrites metadata: not the caller's
	for i := range ws {
		if err := ws[i].Validate(); err != nil {
			return nil, nil, fmt.Errorf("write %d: %w", i, err)
		}
	}
	users = make([]usersync.User, len(ws))
	outcomes = make([]usersync.Outcome, len(ws))
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
	// The refused writes are found only after a refusal: the batch runs
	// again, each statement under a savepoint and a refused one row by row.
	careful := false
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
				idx := round[start:min(start+batchRows, len(round))]
				if careful {
					err = s.upsertRowsCarefully(ctx, tx, ws, idx, users, outcomes, &skipped)
				} else {
					err = s.upsertRows(ctx, tx, ws, idx, users, outcomes)
				}
				if err != nil {
					return s.ended(ctx, tx, err)
				}
				for _, i := range idx {
					if err := s.callHook(ctx, tx, outcomes[i], users[i]); err != nil {
						return s.ended(ctx, tx, err)
					}
				}
			}
		}
		return s.commit(ctx, tx)
	}
	attempts, err := s.try(ctx, run)
	if _, hook := s.hookFailed("", 0, err); err != nil && !hook && refusedValue(err) {
		careful = true
		var more int
		more, err = s.try(ctx, run)
		attempts += more
	}
	if hook, ok := s.hookFailed("upsert batch", attempts, err); ok {
		return nil, nil, hook
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

// chunk is the writes of one multi-row upsert: ws[i] for each i in idx
// (distinct token identifiers), whose users[i] and outcomes[i] it fills.
type chunk struct {
	ws       []usersync.Write
	idx      []int
	users    []usersync.User
	outcomes []usersync.Outcome
}

// byKey maps the token identifiers of c's writes to their indexes in ws.
func (c chunk) byKey() map[string]int {
	byKey := make(map[string]int, len(c.idx))
	for _, i := range c.idx {
		byKey[c.ws[i].TokenIdentifier] = i
	}
	return byKey
}

// upsertRows upserts ws[i] for i in idx (distinct token identifiers) in
// one multi-row statement, run by the dialect (upsertChunk), and fills
// their users and outcomes.
func (s *Store) upsertRows(ctx context.Context, tx *sql.Tx, ws []usersync.Write, idx []int, users []usersync.User, outcomes []usersync.Outcome) error {
	args := make([]any, 0, len(idx)*len(insertColumns))
	for _, i := range idx {
		w := &ws[i]
		args = insertArgs(args, s.dialect, w, w.Fields, w.At, w.At, zeroTime)
	}
	upsert, err := s.batchStmt(ctx, tx, s.upsertManySQL(len(idx)), len(idx))
	if err != nil {
		return err
	}
	return s.dialect.upsertChunk(s, ctx, tx, upsert, args, chunk{ws, idx, users, outcomes})
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
	return append([]string{s.upsertManySQL(batchRows)}, s.dialect.chunkQueries(s, batchRows)...)
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
