package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

// The change feed (migration 4): triggers append a row to <table>_changes
// in the transaction of every write that changes a user. On SQLite, whose
// writers take turns, its rowid seq is in commit order. On PostgreSQL and
// MySQL, transactions commit out of the order of their ids, so a change's
// seq is assigned after it committed, by sequence, which their dialects
// run before the feed is read or pruned (dialect.sequence).

// sequenceBatch is how many changes one sequencing transaction numbers.
const sequenceBatch = 1000

// Changes implements feed.Store. On PostgreSQL and MySQL it first
// numbers the changes committed since the last call (in one short
// transaction, under the lock of the sequence row), so a change is in the
// feed as soon as a reader asks.
func (s *Store) Changes(ctx context.Context, after int64, limit int) (changes []usersync.Change, err error) {
	ctx, op := s.tel.start(ctx, opChanges)
	defer op.finish(ctx, &err)
	if limit < 1 {
		return nil, fmt.Errorf("%w: a limit below 1", usersync.ErrInvalid)
	}
	if err := s.dialect.sequence(s, ctx); err != nil {
		return nil, err
	}
	st, err := s.stmt(ctx, s.sql.changes)
	if err != nil {
		return nil, err
	}
	var out []usersync.Change
	attempts, err := s.try(ctx, func() error {
		out = out[:0]
		rows, err := st.QueryContext(ctx, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c usersync.Change
			var outcome, entity int64
			if err := rows.Scan(&c.Seq, &c.UserID, &outcome, (*timeColumn)(&c.At), &c.ExternalID, &entity, &c.OrganizationID, &c.Subject); err != nil {
				return err
			}
			c.Outcome, c.Entity = usersync.Outcome(outcome), usersync.Entity(entity)
			if c.Entity != usersync.EntityUser {
				c.UserID = "" // the key the sequencer orders the row's changes by
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.wrapN("read the change feed", attempts, err)
	}
	return out, nil
}

// PruneChanges implements feed.Store in one statement, after numbering
// the committed changes (every change a reader can see has a Seq).
func (s *Store) PruneChanges(ctx context.Context, through int64, before time.Time) (n int, err error) {
	ctx, op := s.tel.start(ctx, opPruneChanges)
	defer op.finish(ctx, &err)
	if err := s.dialect.sequence(s, ctx); err != nil {
		return 0, err
	}
	var res sql.Result
	attempts, err := s.try(ctx, func() (err error) {
		res, err = s.db.ExecContext(ctx, s.sql.prune, through, s.dialect.timeArg(before))
		return err
	})
	if err != nil {
		return 0, s.wrapN("prune the change feed", attempts, err)
	}
	pruned, err := res.RowsAffected()
	return int(pruned), err
}

// sequence numbers the committed changes that have no seq yet, in the
// order of their ids, except that each user's changes go in the order of
// their user_seq (on a Galera cluster each node hands out its own ids),
// after the highest seq so far. It runs under the lock of the sequence
// row, whose update also makes concurrent sequencers on other Galera nodes
// conflict (and retry): one numbering at a time, cluster-wide.
func (s *Store) sequence(ctx context.Context) error {
	probe, err := s.stmt(ctx, s.sql.unsequenced)
	if err != nil {
		return err
	}
	for {
		var id int64
		if err := probe.QueryRowContext(ctx).Scan(&id); errors.Is(err, sql.ErrNoRows) {
			return nil // the usual case: nothing new
		} else if err != nil {
			return s.wrap("sequence the change feed", err)
		}
		n := 0
		attempts, err := s.try(ctx, func() (err error) {
			n, err = s.sequenceOnce(ctx)
			return err
		})
		if err != nil {
			return s.wrapN("sequence the change feed", attempts, err)
		}
		if n < sequenceBatch {
			return nil
		}
	}
}

// unsequenced is a committed change without a seq.
type unsequenced struct {
	id, userSeq int64
	user        string
}

// sequenceOnce numbers up to sequenceBatch changes in one transaction and
// returns how many.
func (s *Store) sequenceOnce(ctx context.Context) (int, error) {
	d := s.dialect
	// READ COMMITTED: each statement sees what committed before it, on
	// MySQL too (whose default would read a snapshot).
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var last int64
	if err := tx.QueryRowContext(ctx, s.sql.lastSeq).Scan(&last); err != nil {
		return 0, err
	}
	rows, err := tx.QueryContext(ctx, s.sql.nextUnsequenced)
	if err != nil {
		return 0, err
	}
	var batch []unsequenced
	for rows.Next() {
		var c unsequenced
		if err := rows.Scan(&c.id, &c.user, &c.userSeq); err != nil {
			rows.Close()
			return 0, err
		}
		batch = append(batch, c)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if len(batch) == sequenceBatch {
		// A full batch may end between two changes of one user whose ids
		// are out of the order of their writes (Galera nodes hand out
		// their own ids): the user's later changes join the batch, so
		// that none of them is numbered before an earlier one.
		if batch, err = s.withLaterChanges(ctx, tx, batch); err != nil {
			return 0, err
		}
	}
	order(batch)
	var q strings.Builder
	args := make([]any, 0, 3*len(batch))
	q.WriteString(s.sql.setSeqPrefix)
	for i, c := range batch {
		fmt.Fprintf(&q, " WHEN %s THEN %s", d.bigint(len(args)+1), d.bigint(len(args)+2))
		args = append(args, c.id, last+int64(i)+1)
	}
	q.WriteString(" END WHERE id IN (")
	for i, c := range batch {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(d.placeholder(len(args) + 1))
		args = append(args, c.id)
	}
	q.WriteString(")")
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return 0, err
	}
	last += int64(len(batch))
	if _, err := tx.ExecContext(ctx, s.sql.setLastSeq, last); err != nil {
		return 0, err
	}
	return len(batch), s.commit(ctx, tx)
}

// withLaterChanges appends to a batch sorted by id the unsequenced changes
// of its users with higher ids, in the order of their ids.
func (s *Store) withLaterChanges(ctx context.Context, tx *sql.Tx, batch []unsequenced) ([]unsequenced, error) {
	d := s.dialect
	users := map[string]bool{}
	args := []any{batch[len(batch)-1].id}
	var in strings.Builder
	for _, c := range batch {
		if users[c.user] {
			continue
		}
		users[c.user] = true
		if len(args) > 1 {
			in.WriteString(", ")
		}
		args = append(args, c.user)
		in.WriteString(d.placeholder(len(args)))
	}
	rows, err := tx.QueryContext(ctx, s.sql.laterChangesPrefix+in.String()+") ORDER BY id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c unsequenced
		if err := rows.Scan(&c.id, &c.user, &c.userSeq); err != nil {
			return nil, err
		}
		batch = append(batch, c)
	}
	return batch, rows.Err()
}

// order puts a batch sorted by id into feed order: each user's changes
// take that user's places in the batch in the order of their user_seq.
func order(batch []unsequenced) {
	places := map[string][]int{}
	for i, c := range batch {
		places[c.user] = append(places[c.user], i)
	}
	for _, idx := range places {
		if len(idx) < 2 {
			continue
		}
		mine := make([]unsequenced, len(idx))
		for k, i := range idx {
			mine[k] = batch[i]
		}
		slices.SortFunc(mine, func(a, b unsequenced) int { return cmp.Compare(a.userSeq, b.userSeq) })
		for k, i := range idx {
			batch[i] = mine[k]
		}
	}
}
