package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/usersync/usersync"
)

// A Hook runs inside the transaction of a user write that changed
// something (Config.OnWrite): tx is that transaction, and c the change,
// with c.User the user as written (for Deleted, the tombstone, which keeps
// its ExternalID). What it does in tx commits with the write, or not at
// all: it may insert or link the app's own row of the user, or apply a
// side effect in the database (anonymise a deleted user's orders) exactly
// once. If it fails, the write rolls back and the caller gets its error
// (a webhook answers 500, and the provider delivers it again).
//
// A write the database runs again (a serialization failure, a deadlock, a
// Galera certification conflict, in the write or in the hook's own
// statements) runs the hook again, in the new transaction: it must do its
// work through tx only, and leave anything outside the database (an email,
// a cache) to the change feed. It must not commit or roll back tx.
//
// One exception, on a multi-writer Galera cluster: a node's brute-force
// abort can end tx under one of the hook's statements, and the statements
// after it then commit on their own. The Store notices before its COMMIT
// and runs the write again, hook included, but what ran after the abort
// stays (docs/operations.md, Galera): keep the hook's writes idempotent,
// or the users table's writes on one node.
type Hook func(ctx context.Context, tx *sql.Tx, c usersync.Change) error

// hookError is a Hook's error, kept apart from the database's errors of
// the write: it is the app's, so the store neither rewrites it (wrap) nor
// takes it for a refused value (UpsertBatch), and retries it only if the
// database asked for it (retryable).
type hookError struct{ err error }

func (e *hookError) Error() string { return e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }

// callHook runs the store's hook for the change of u, if it changed.
func (s *Store) callHook(ctx context.Context, tx *sql.Tx, o usersync.Outcome, u usersync.User) error {
	if s.onWrite == nil || o == usersync.Stale {
		return nil
	}
	if o == usersync.Created && !u.DeletedAt.IsZero() {
		o = usersync.Deleted // the tombstone of a key never seen, as Delete reports it
	}
	if err := s.onWrite(ctx, tx, usersync.Change{Outcome: o, UserID: u.ID, ExternalID: u.ExternalID, At: u.UpdatedAt, User: u}); err != nil {
		return &hookError{err}
	}
	return nil
}

// hookFailed returns err as the caller gets it, and whether it is the
// hook's: the hook's error with the operation and table, or nil.
func (s *Store) hookFailed(op string, attempts int, err error) (error, bool) {
	var h *hookError
	if !errors.As(err, &h) {
		return nil, false
	}
	if attempts > 1 {
		op = fmt.Sprintf("%s (%d attempts)", op, attempts)
	}
	return fmt.Errorf("usersync/sqlstore: %s %s: the OnWrite hook: %w", op, s.table, h.err), true
}

// write runs the dialect's write of w (query, fields, deleted, changed:
// see writes.write): an upsert without a hook on its own; a delete (a
// deleted time), or any write with a hook, in a transaction, which runs
// again as a whole when the database asks. A delete ends the user's
// memberships in it (endUserMemberships), the hook runs in it, and a
// delete that deleted the user records the ending of every session of
// the user last (endUserSessions).
func (s *Store) write(ctx context.Context, op, query string, w *usersync.Write, fields usersync.Fields, deleted time.Time, changed usersync.Outcome) (u usersync.User, outcome usersync.Outcome, err error) {
	ends := !deleted.IsZero()
	if s.onWrite == nil && !ends {
		return s.dialect.write(s, ctx, nil, op, query, w, fields, deleted, changed)
	}
	// Prepared before the transaction: a pool of one connection (SQLite)
	// has none to spare inside it.
	queries := []string{query, s.sql.getByToken, s.sql.orgs.endUserMembers}
	if ends {
		queries = append(queries, s.sql.sessions.one)
	}
	if err := s.prepare(ctx, queries...); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	var own error // the write's error, already wrapped
	attempts, err := s.try(ctx, func() error {
		own = nil
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if ends {
			// First, on PostgreSQL: a membership write of the user
			// waits for the commit, or the delete for the write's.
			if err := s.lockKeys(ctx, tx, w.TokenIdentifier); err != nil {
				return err
			}
		}
		u, outcome, own = s.dialect.write(s, ctx, tx, op, query, w, fields, deleted, changed)
		if own != nil {
			return s.ended(ctx, tx, own)
		}
		if ends {
			// Also after a Stale delete: a membership a Galera node
			// wrote meanwhile (see mysqlDialect's orgs) ends now.
			if err := s.endUserMemberships(ctx, tx, w.TokenIdentifier, deleted); err != nil {
				return s.ended(ctx, tx, err)
			}
		}
		if err := s.callHook(ctx, tx, outcome, u); err != nil {
			return s.ended(ctx, tx, err)
		}
		if ends && outcome != usersync.Stale {
			// Last before the COMMIT: its recorded_at is the
			// statement's time, which readers trust to be close to
			// the commit (sessions.Store.EndedSessions).
			if err := s.endUserSessions(ctx, tx, &u, deleted); err != nil {
				return s.ended(ctx, tx, err)
			}
		}
		return s.commit(ctx, tx)
	})
	switch hook, ok := s.hookFailed(op, attempts, err); {
	case ok:
		return usersync.User{}, usersync.Stale, hook
	case err != nil && err == own:
		return usersync.User{}, usersync.Stale, err
	case err != nil:
		return usersync.User{}, usersync.Stale, s.wrapN(op, attempts, err)
	}
	return u, outcome, nil
}

// run runs f in tx, once (the transaction's owner retries it as a whole),
// or with tx nil under the store's retries (try). It returns how many
// times f ran.
func (s *Store) run(ctx context.Context, tx *sql.Tx, f func() error) (int, error) {
	if tx != nil {
		return 1, f()
	}
	return s.try(ctx, f)
}

// in returns st in tx, or st itself when tx is nil.
func in(ctx context.Context, tx *sql.Tx, st *sql.Stmt) *sql.Stmt {
	if tx == nil {
		return st
	}
	return tx.StmtContext(ctx, st)
}
