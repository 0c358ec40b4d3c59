package sqlstore

import (
	"context"
	"database/sql"
	"errors"
)

// A write of organizations or memberships runs in a transaction (inTx):
// it reads the rows it may change, locked (orgDialect), decides in Go by
// the write rules of package orgs, and writes the rows that change, a
// multi-row statement per chunk of a batch. Concurrent first writes of
// one key both find no row; the second INSERT then fails on the primary
// key (or, on MySQL, in a deadlock on the gap both locked, or in Galera's
// certification), and the transaction runs again, finding the first's
// row.

// answer is the store's answer to a write, returned from a transaction
// that rolls back: ErrDeleted, say. inTx returns its error as it is.
type answer struct{ err error }

func (a *answer) Error() string { return a.err.Error() }
func (a *answer) Unwrap() error { return a.err }

// inTx runs f in a transaction and commits, again in a new one when the
// database asks for it to be run again or when a concurrent first write
// took a key that f inserted, up to Config.MaxAttempts times in all. An
// error f returns as an *answer comes back as its error; any other is
// wrapped with op.
func (s *Store) inTx(ctx context.Context, op string, f func(tx *sql.Tx) error) error {
	total := 0
	for {
		attempts, err := s.try(ctx, func() error {
			tx, err := s.db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if err := f(tx); err != nil {
				return s.ended(ctx, tx, err)
			}
			return s.commit(ctx, tx)
		})
		total += attempts
		var a *answer
		switch {
		case err == nil:
			return nil
		case errors.As(err, &a):
			return a.err
		case keyTaken(err) && total < s.maxAttempts && ctx.Err() == nil:
			s.retries.Add(1)
			s.tel.retry(ctx)
			continue // the key's row is there now: the next read finds it
		case keyTaken(err):
			return s.wrapN(op, total, errors.New("a concurrent write kept taking the key"))
		}
		return s.wrapN(op, total, err)
	}
}

// prepare prepares queries before a transaction: a pool of one connection
// (SQLite) has none to spare inside it. txQuery and txExec then run them
// as statements of the transaction.
func (s *Store) prepare(ctx context.Context, queries ...string) error {
	for _, q := range queries {
		if _, err := s.stmt(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// txQuery runs query in tx: as the store's prepared statement if prepare
// prepared it, else on its own (a chunk of a size that comes once).
func (s *Store) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st, ok := s.stmts.Load(query); ok {
		return tx.StmtContext(ctx, st.(*sql.Stmt)).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// txExec is txQuery for a statement that returns no rows.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	var err error
	if st, ok := s.stmts.Load(query); ok {
		_, err = tx.StmtContext(ctx, st.(*sql.Stmt)).ExecContext(ctx, args...)
	} else {
		_, err = tx.ExecContext(ctx, query, args...)
	}
	return err
}

// lockKeys takes the dialect's locks on keys in tx, if it has any
// (orgDialect.lockKeys).
func (s *Store) lockKeys(ctx context.Context, tx *sql.Tx, keys ...string) error {
	if s.dialect.orgs.lockKeys == nil || len(keys) == 0 {
		return nil
	}
	return s.dialect.orgs.lockKeys(s, ctx, tx, keys)
}

// chunks calls f with each run of up to orgChunk of idx, in order.
func chunks(idx []int, f func(part []int) error) error {
	for start := 0; start < len(idx); start += orgChunk {
		if err := f(idx[start:min(start+orgChunk, len(idx))]); err != nil {
			return err
		}
	}
	return nil
}

// roundsOf splits the indexes 0..n-1 into rounds in which every key (of
// key(i)) appears once, keeping the order of the writes of one key: one
// statement may not change a row twice, and each change of a row is a
// change of the feed of its own.
func roundsOf(n int, key func(i int) string) [][]int {
	seen := make(map[string]int, n)
	var out [][]int
	for i := range n {
		k := key(i)
		r := seen[k]
		seen[k] = r + 1
		if r == len(out) {
			out = append(out, nil)
		}
		out[r] = append(out[r], i)
	}
	return out
}
