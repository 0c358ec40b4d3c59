package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sessions"
)

// Store keeps ended sessions for every replica in <table>_ended_sessions
// (migration 7, PostgreSQL 8), and its Delete of a user records the
// ending of every session of the user, in the delete's transaction.
var _ sessions.Store = (*Store)(nil)

// sessionChunk is how many endings one INSERT records: well under every
// dialect's limit of bind parameters.
const sessionChunk = 250

// sessionStatements are the statements of ended sessions, for one table
// and dialect. An INSERT of n endings is built by insert.
type sessionStatements struct {
	d     *dialect
	table string // quoted and qualified
	// one and full are the INSERTs of one ending (a user's delete, the
	// usual webhook) and of a full chunk, built once.
	one, full string
	// list reads the endings after a position; prune deletes those that
	// ended before a time.
	list, prune string
}

// newSessionStatements returns the statements of table t in dialect d.
func newSessionStatements(d *dialect, t tableName) sessionStatements {
	p := d.placeholder
	q := sessionStatements{d: d, table: t.qualified(d, "ended_sessions")}
	q.one, q.full = q.build(1), q.build(sessionChunk)
	// The position is (recorded_at, seq): recorded_at >= bounds the
	// range of the (recorded_at, seq) index, which every dialect reads
	// alike (a row comparison is not so everywhere).
	q.list = fmt.Sprintf("SELECT issuer, session_id, subject, ended_at, recorded_at, seq FROM %s "+
		"WHERE recorded_at >= %s AND (recorded_at > %s OR seq > %s) ORDER BY recorded_at, seq LIMIT %s",
		q.table, p(1), p(2), p(3), p(4))
	q.prune = fmt.Sprintf("DELETE FROM %s WHERE ended_at < %s", q.table, p(1))
	return q
}

// insert returns the INSERT of n endings' issuer, session_id, subject
// and ended_at, each recorded_at the server's clock as it runs, which
// skips the endings whose key is recorded.
func (q *sessionStatements) insert(n int) string {
	switch n {
	case 1:
		return q.one
	case sessionChunk:
		return q.full
	}
	return q.build(n)
}

func (q *sessionStatements) build(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (issuer, session_id, subject, ended_at, recorded_at) VALUES ", q.table)
	for r := range n {
		if r > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%s, %s, %s, %s, %s)", q.d.placeholder(4*r+1), q.d.placeholder(4*r+2), q.d.placeholder(4*r+3), q.d.placeholder(4*r+4),
			q.d.sessions.now)
	}
	b.WriteString(" ")
	b.WriteString(q.d.sessions.keep)
	return b.String()
}

// EndSessions implements sessions.Store in one transaction: a multi-row
// INSERT per 250 endings (on MySQL, each followed by a count of its
// keys' rows: see sessionDialect.checkKept), each ending's recorded_at the
// database server's clock as its statement runs.
func (s *Store) EndSessions(ctx context.Context, endings ...sessions.Ending) (err error) {
	ctx, op := s.tel.start(ctx, opEndSessions)
	defer op.finish(ctx, &err)
	for i := range endings {
		if err := endings[i].Validate(); err != nil {
			return fmt.Errorf("ending %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(endings) == 0 {
		return nil
	}
	q := &s.sql.sessions
	// The statements of one ending and of a full chunk are prepared
	// before the transaction (a pool of one connection, SQLite's, has
	// none to spare inside it) and kept; those of other sizes run
	// unprepared.
	if len(endings) >= sessionChunk {
		if err := s.prepare(ctx, q.full); err != nil {
			return err
		}
	}
	if len(endings)%sessionChunk == 1 {
		if err := s.prepare(ctx, q.one); err != nil {
			return err
		}
	}
	return s.inTx(ctx, "end sessions", func(tx *sql.Tx) error {
		for start := 0; start < len(endings); start += sessionChunk {
			part := endings[start:min(start+sessionChunk, len(endings))]
			args := make([]any, 0, 4*len(part))
			for i := range part {
				e := &part[i]
				args = append(args, e.Issuer, e.SessionID, e.Subject, e.EndedAt.UnixMilli())
			}
			if err := s.txExec(ctx, tx, q.insert(len(part)), args...); err != nil {
				return err
			}
			if err := s.checkKept(ctx, tx, part); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkKept fails with errEndingLost if a key of endings, which tx has
// just inserted, has no row, on a dialect that asks for the check
// (sessionDialect.checkKept). Every key has one by then: the INSERT's own
// row, or the row of the key's recorded ending, committed before the
// INSERT could pass it; the count reads them all in tx.
func (s *Store) checkKept(ctx context.Context, tx *sql.Tx, endings []sessions.Ending) error {
	if !s.dialect.sessions.checkKept {
		return nil
	}
	type key struct{ issuer, session, subject string }
	keys := make(map[key]bool, len(endings))
	var b strings.Builder
	args := make([]any, 0, 2*len(endings))
	fmt.Fprintf(&b, "SELECT COUNT(*) FROM %s WHERE ", s.sql.sessions.table)
	for _, e := range endings {
		k := key{e.Issuer, e.SessionID, ""}
		column, value := "session_key", e.SessionID
		if e.SessionID == "" {
			k.subject, column, value = e.Subject, "user_key", e.Subject
		}
		if keys[k] {
			continue
		}
		if len(keys) > 0 {
			b.WriteString(" OR ")
		}
		keys[k] = true
		fmt.Fprintf(&b, "(issuer = %s AND %s = %s)", s.dialect.placeholder(len(args)+1), column, s.dialect.placeholder(len(args)+2))
		args = append(args, e.Issuer, value)
	}
	var n int
	if err := tx.QueryRowContext(ctx, b.String(), args...).Scan(&n); err != nil {
		return err
	}
	if n < len(keys) {
		return errEndingLost // try counts the run again
	}
	return nil
}

// maxEndedSessions is the largest limit of EndedSessions.
const maxEndedSessions = 1000

// EndedSessions implements sessions.Store in one read of the index of
// (recorded_at, seq).
func (s *Store) EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) (out []sessions.Ending, err error) {
	ctx, op := s.tel.start(ctx, opEndedSessions)
	defer op.finish(ctx, &err)
	if limit < 1 || limit > maxEndedSessions {
		return nil, fmt.Errorf("%w: limit %d is not 1 to %d", usersync.ErrInvalid, limit, maxEndedSessions)
	}
	// recorded_at is in whole milliseconds: after a time within one (not
	// a RecordedAt) come the endings of the next millisecond on.
	ms := at.UnixMilli() // rounded down, before the epoch too
	if !time.UnixMilli(ms).Equal(at) {
		seq = math.MaxInt64
	}
	st, err := s.stmt(ctx, s.sql.sessions.list)
	if err != nil {
		return nil, err
	}
	attempts, err := s.try(ctx, func() error {
		out = out[:0]
		rows, err := st.QueryContext(ctx, ms, ms, seq, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e sessions.Ending
			var ended, recorded int64
			if err := rows.Scan(&e.Issuer, &e.SessionID, &e.Subject, &ended, &recorded, &e.Seq); err != nil {
				return err
			}
			e.EndedAt, e.RecordedAt = time.UnixMilli(ended).UTC(), time.UnixMilli(recorded).UTC()
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.wrapN("list ended sessions", attempts, err)
	}
	return out, nil
}

// PruneEndedSessions implements sessions.Store in one DELETE, by the
// index of ended_at.
func (s *Store) PruneEndedSessions(ctx context.Context, before time.Time) (n int64, err error) {
	ctx, op := s.tel.start(ctx, opPruneEndedSessions)
	defer op.finish(ctx, &err)
	// ended_at is in whole milliseconds: one that holds before is before
	// it.
	bound := before.UnixMilli() // rounded down, before the epoch too
	if !time.UnixMilli(bound).Equal(before) {
		bound++
	}
	st, err := s.stmt(ctx, s.sql.sessions.prune)
	if err != nil {
		return 0, err
	}
	var res sql.Result
	attempts, err := s.try(ctx, func() (err error) {
		res, err = st.ExecContext(ctx, bound)
		return err
	})
	if err != nil {
		return 0, s.wrapN("prune ended sessions", attempts, err)
	}
	if n, err = res.RowsAffected(); err != nil {
		return 0, s.wrap("prune ended sessions", err)
	}
	return n, nil
}

// endUserSessions records in tx the ending of every session of u, whom
// tx deleted at at (sessions.Store's rule), unless an ending of them is
// recorded. The user's Delete runs it last, just before its COMMIT, so
// that recorded_at, the time of the statement, is close to the time the
// ending becomes visible to readers (see sessions.Store.EndedSessions).
// An ending no store of endings holds (sessions.Ending.Validate: an issuer
// past 255 bytes, a time before 1970) is not recorded.
func (s *Store) endUserSessions(ctx context.Context, tx *sql.Tx, u *usersync.User, at time.Time) error {
	e := sessions.Ending{Issuer: u.Issuer, Subject: u.Subject, EndedAt: at}
	if e.Validate() != nil {
		return nil
	}
	if err := s.txExec(ctx, tx, s.sql.sessions.one, e.Issuer, "", e.Subject, e.EndedAt.UnixMilli()); err != nil {
		return err
	}
	return s.checkKept(ctx, tx, []sessions.Ending{e})
}
