package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/usersync/usersync/sqlstore"
)

// message is one chat message; UserID is a users.id foreign key.
type message struct {
	ID        int64
	UserID    string
	Body      string
	CreatedAt time.Time
}

// messages is the app's own table of messages.
type messages interface {
	// add stores a message of userID, or returns errAuthorDeleted if the
	// user is deleted (tombstoned) by then.
	add(ctx context.Context, userID, body string, at time.Time) (int64, error)
	// list returns up to limit messages after the ID after, oldest first.
	list(ctx context.Context, after int64, limit int) ([]message, error)
	countBy(ctx context.Context, userID string) (int, error)
	// erase replaces the body of every message of userID with erased:
	// idempotent, as a change-feed handler must be.
	erase(ctx context.Context, userID string) error
}

// erased is what an erased message reads.
const erased = "[deleted]"

// errAuthorDeleted: the author of a message being sent was deleted.
var errAuthorDeleted = errors.New("the author is deleted")

// memMessages keeps messages in memory, beside memstore.
type memMessages struct {
	mu   sync.Mutex
	msgs []message
}

func (m *memMessages) add(_ context.Context, userID, body string, at time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := int64(len(m.msgs) + 1)
	m.msgs = append(m.msgs, message{ID: id, UserID: userID, Body: body, CreatedAt: at})
	return id, nil
}

func (m *memMessages) list(_ context.Context, after int64, limit int) ([]message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []message
	for _, msg := range m.msgs {
		if msg.ID > after && len(out) < limit {
			out = append(out, msg)
		}
	}
	return out, nil
}

func (m *memMessages) countBy(_ context.Context, userID string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, msg := range m.msgs {
		if msg.UserID == userID {
			n++
		}
	}
	return n, nil
}

func (m *memMessages) erase(_ context.Context, userID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.msgs {
		if m.msgs[i].UserID == userID {
			m.msgs[i].Body = erased
		}
	}
	return nil
}

// sqlMessages keeps messages in the database, with a foreign key to the
// users table: users are tombstoned, never removed, so it stays valid.
type sqlMessages struct {
	db    *sql.DB
	d     sqlstore.Dialect
	users string // the users table, as SQL
}

func (m *sqlMessages) ph(n int) string {
	if m.d == sqlstore.Postgres {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

func (m *sqlMessages) migrate(ctx context.Context) error {
	users := m.users
	var q string
	switch m.d {
	case sqlstore.Postgres:
		q = `CREATE TABLE IF NOT EXISTS messages (id BIGSERIAL PRIMARY KEY, user_id TEXT COLLATE "C" NOT NULL REFERENCES ` + users + `(id), body TEXT NOT NULL, created_at BIGINT NOT NULL)`
	case sqlstore.MySQL:
		q = "CREATE TABLE IF NOT EXISTS messages (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id VARBINARY(128) NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL, FOREIGN KEY (user_id) REFERENCES " + users + "(id)) ENGINE=InnoDB"
	default:
		q = `CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL REFERENCES ` + users + `(id), body TEXT NOT NULL, created_at BIGINT NOT NULL)`
	}
	if _, err := m.db.ExecContext(ctx, q); err != nil {
		return err
	}
	idx := "CREATE INDEX IF NOT EXISTS messages_user_id ON messages (user_id)"
	if m.d == sqlstore.MySQL {
		return nil // the foreign key already indexes user_id
	}
	_, err := m.db.ExecContext(ctx, idx)
	return err
}

// add inserts the message only while its author is live, holding a shared
// lock on the user's row (PostgreSQL, MySQL) until the insert commits: a
// deletion either commits first, and the message is refused, or waits for
// the message, which its erasure by the change feed's consumer then finds.
// Without the lock a message sent as its author is deleted could land
// after the erasure and keep its body. (SQLite runs one writer at a time.)
func (m *sqlMessages) add(ctx context.Context, userID, body string, at time.Time) (int64, error) {
	live := m.users + " WHERE id = " + m.ph(1) + " AND deleted_at IS NULL"
	if m.d == sqlstore.MySQL {
		res, err := m.db.ExecContext(ctx, "INSERT INTO messages (user_id, body, created_at) SELECT id, ?, ? FROM "+live+" LOCK IN SHARE MODE", body, at.UnixMilli(), userID)
		if err != nil {
			return 0, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return 0, cmp.Or(err, errAuthorDeleted)
		}
		return res.LastInsertId()
	}
	q, args := "INSERT INTO messages (user_id, body, created_at) SELECT id, ?, ? FROM "+live+" RETURNING id", []any{body, at.UnixMilli(), userID}
	if m.d == sqlstore.Postgres {
		q, args = "INSERT INTO messages (user_id, body, created_at) SELECT id, $2, $3 FROM "+live+" FOR SHARE RETURNING id", []any{userID, body, at.UnixMilli()}
	}
	var id int64
	err := m.db.QueryRowContext(ctx, q, args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errAuthorDeleted
	}
	return id, err
}

func (m *sqlMessages) list(ctx context.Context, after int64, limit int) ([]message, error) {
	rows, err := m.db.QueryContext(ctx, fmt.Sprintf("SELECT id, user_id, body, created_at FROM messages WHERE id > %s ORDER BY id LIMIT %s", m.ph(1), m.ph(2)), after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []message
	for rows.Next() {
		var msg message
		var at int64
		if err := rows.Scan(&msg.ID, &msg.UserID, &msg.Body, &at); err != nil {
			return nil, err
		}
		msg.CreatedAt = time.UnixMilli(at)
		out = append(out, msg)
	}
	return out, rows.Err()
}

func (m *sqlMessages) countBy(ctx context.Context, userID string) (int, error) {
	var n int
	err := m.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages WHERE user_id = "+m.ph(1), userID).Scan(&n)
	return n, err
}

func (m *sqlMessages) erase(ctx context.Context, userID string) error {
	_, err := m.db.ExecContext(ctx, "UPDATE messages SET body = "+m.ph(1)+" WHERE user_id = "+m.ph(2), erased, userID)
	return err
}
