package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/usersync/usersync"
)

// errKind is what a database error means to the Store.
type errKind int

const (
	errOther errKind = iota
	// errRetry asks for the statement to be run again: a serialization
	// failure or a deadlock, which aborted it (and, in autocommit, its
	// transaction) before it changed anything.
	errRetry
	// errKeyTaken is a unique key that clashes.
	errKeyTaken
	// errRefused is a value of a write the database refused: bad input,
	// not a failure of the database.
	errRefused
)

// errKinds tell what an error of each dialect's drivers means, and the
// database's code for it (sqliteErr, postgresErr, mysqlErr). The drivers'
// errors are told apart by their shape, without importing a driver, so
// every store reads all of them.
var errKinds = [...]func(error) (errKind, string){sqliteErr, postgresErr, mysqlErr, ownErr}

// errTxEnded reports a transaction the database ended under the Store
// (see commit): it runs again.
var errTxEnded = errors.New("usersync/sqlstore: the database ended the transaction under its statements (a Galera brute-force abort)")

// errEndingLost reports an INSERT of ended sessions after which a key of
// its endings has no row (see sessionDialect.checkKept): it runs again.
var errEndingLost = errors.New("usersync/sqlstore: an ended session's INSERT kept another row (MariaDB gave it a taken AUTO_INCREMENT seq)")

// ownErr tells the Store's own errors that ask for a run again.
func ownErr(err error) (errKind, string) {
	switch {
	case errors.Is(err, errTxEnded):
		return errRetry, "ended"
	case errors.Is(err, errEndingLost):
		return errRetry, "ending lost"
	}
	return errOther, ""
}

// kindOf reports whether err is of kind k, and the database's code.
func kindOf(err error, k errKind) (code string, ok bool) {
	for _, kind := range errKinds {
		if got, c := kind(err); got == k {
			return c, true
		}
	}
	return "", false
}

// retryable reports whether the database asks for the statement to be run
// again. Every statement of the Store is idempotent (its writes are
// versioned), so running it again is safe; nothing else is retried.
func retryable(err error) bool {
	_, ok := kindOf(err, errRetry)
	return ok
}

// keyTaken reports whether err is a unique-key violation.
func keyTaken(err error) bool {
	_, ok := kindOf(err, errKeyTaken)
	return ok
}

// refusedValue reports whether the database refused a value of a write.
func refusedValue(err error) bool {
	_, ok := kindOf(err, errRefused)
	return ok
}

// try runs f until it succeeds, fails with an error that is not
// retryable, has run MaxAttempts times, or ctx ends. Between attempts it
// waits a jittered, growing backoff: up to 5 ms, 10 ms, 20 ms, ... 250 ms.
// It returns how many times f ran.
func (s *Store) try(ctx context.Context, f func() error) (attempts int, err error) {
	for attempts = 1; ; attempts++ {
		err = f()
		if err == nil || !retryable(err) || attempts >= s.maxAttempts {
			return attempts, err
		}
		s.retries.Add(1)
		s.tel.retry(ctx)
		backoff := min(5*time.Millisecond<<(attempts-1), 250*time.Millisecond)
		t := time.NewTimer(rand.N(backoff) + time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempts, err
		case <-t.C:
		}
	}
}

// refusal is in the chain of wrap's error for a value the database
// refused (refusedValue): its code, without the database's message, which
// may quote the value.
type refusal struct {
	code string // the SQLSTATE, or MySQL's error number
}

func (r *refusal) Error() string { return "the database refused a value (error " + r.code + ")" }

// refused returns the refusal in err's chain, or nil.
func refused(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// wrapN is wrap for a statement that ran attempts times: the count goes
// into the error, and so into the log line of the failure.
func (s *Store) wrapN(op string, attempts int, err error) error {
	if attempts > 1 {
		op = fmt.Sprintf("%s (%d attempts)", op, attempts)
	}
	return s.wrap(op, err)
}

// wrap adds the operation and table to err. A value the database refused
// becomes usersync.ErrInvalid, without the database's message, which may
// quote the value.
func (s *Store) wrap(op string, err error) error {
	if keyTaken(err) {
		// The upserts resolve conflicts of the token identifier, so a
		// unique key that still clashes is the ID: another user's.
		return fmt.Errorf("%w: usersync/sqlstore: %s %s: the ID is taken by another user", usersync.ErrInvalid, op, s.table)
	}
	if code, ok := kindOf(err, errRefused); ok {
		return fmt.Errorf("%w: usersync/sqlstore: %s %s: %w", usersync.ErrInvalid, op, s.table, &refusal{code})
	}
	return fmt.Errorf("usersync/sqlstore: %s %s: %w", op, s.table, err)
}
