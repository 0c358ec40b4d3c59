package sqlstore

import (
	"context"
	"database/sql"
)

// commit commits tx. On MariaDB it first asks whether the transaction is
// still open. A Galera node that applies another node's write needing a
// lock of tx aborts tx (a brute-force abort), and can do it while one of
// tx's statements runs: that statement may return no error (a locking
// read no rows), the statements after it run outside any transaction,
// each committed at once, and the COMMIT, with nothing to commit,
// succeeds. The write would then report what it rolled back: a user
// Created with an ID the cluster never kept. Asking first turns that into
// errTxEnded, and the transaction runs again. (Statements of an OnWrite
// hook that ran after the abort stay committed: see docs/operations.md.)
// MySQL, which has no in_transaction, is asked nothing.
func (s *Store) commit(ctx context.Context, tx *sql.Tx) error {
	if s.dialect.name == "mysql" && !s.noInTransaction.Load() {
		var open int
		err := tx.QueryRowContext(ctx, "SELECT @@in_transaction").Scan(&open)
		switch {
		case mysqlNumber(err) == 1193: // unknown system variable: MySQL, not MariaDB
			s.noInTransaction.Store(true)
		case err != nil:
			return err
		case open == 0:
			return errTxEnded
		}
	}
	return tx.Commit()
}

// ended returns errTxEnded in place of err, an error a transaction's
// closure returns before its COMMIT, if MariaDB had ended the transaction
// under its statements (see commit): the error may come of the abort (a
// read-back that found no row once the write was rolled back, an app's
// statement in a hook), and the transaction runs again. Any other err is
// returned as it is.
func (s *Store) ended(ctx context.Context, tx *sql.Tx, err error) error {
	if err == nil || retryable(err) || s.dialect.name != "mysql" || s.noInTransaction.Load() || ctx.Err() != nil {
		return err
	}
	var open int
	switch qerr := tx.QueryRowContext(ctx, "SELECT @@in_transaction").Scan(&open); {
	case qerr == nil && open == 0, retryable(qerr): // the abort's error, late
		return errTxEnded
	}
	return err
}
