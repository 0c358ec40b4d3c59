package sqlstore

import (
	"context"
	"math/rand/v2"
	"time"
)

// retryable reports whether the database asks for the statement to be run
// again: a serialization failure or a deadlock, which aborted it (and, in
// autocommit, its transaction) before it changed anything. PostgreSQL's
// 40001 comes from SERIALIZABLE isolation and distributed engines, 40P01
// from a deadlock; MySQL's 1213 is a deadlock, and also how a Galera
// cluster reports a certification conflict with a write committed on
// another node; 1205 is a lock wait timeout, which rolls back the
// statement alone. Every statement of the Store is idempotent (its writes
// are versioned), so running it again is safe; nothing else is retried.
func retryable(err error) bool {
	switch sqlState(err) {
	case "40001", "40P01":
		return true
	}
	switch mysqlNumber(err) {
	case 1213, 1205:
		return true
	}
	return false
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
