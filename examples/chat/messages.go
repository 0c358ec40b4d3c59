package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	// addToRoom and listRoom are add and list in the room of the
	// organization orgID (Clerk's "org_…" ID): the messages of a room are
	// apart from the global ones and from other rooms', with IDs of their
	// own.
	addToRoom(ctx context.Context, orgID, userID, body string, at time.Time) (int64, error)
	listRoom(ctx context.Context, orgID string, after int64, limit int) ([]message, error)
	// erase replaces the body of every message of userID, in the global
	// room and in every organization's, with erased: idempotent, as a
	// change-feed handler must be.
	erase(ctx context.Context, userID string) error
}

// erased is what an erased message reads.
const erased = "[deleted]"

// errAuthorDeleted: the author of a message being sent was deleted.
var errAuthorDeleted = errors.New("the author is deleted")

// memMessages keeps messages in memory, beside memstore.
type memMessages struct {
	mu    sync.Mutex
	msgs  []message
	rooms []roomMessage // of every room, by ID
}

// roomMessage is a message in an organization's room.
type roomMessage struct {
	message
	orgID string
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

func (m *memMessages) addToRoom(_ context.Context, orgID, userID, body string, at time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := int64(len(m.rooms) + 1)
	m.rooms = append(m.rooms, roomMessage{message{ID: id, UserID: userID, Body: body, CreatedAt: at}, orgID})
	return id, nil
}

func (m *memMessages) listRoom(_ context.Context, orgID string, after int64, limit int) ([]message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []message
	for _, msg := range m.rooms {
		if msg.orgID == orgID && msg.ID > after && len(out) < limit {
			out = append(out, msg.message)
		}
	}
	return out, nil
}

func (m *memMessages) erase(_ context.Context, userID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.msgs {
		if m.msgs[i].UserID == userID {
			m.msgs[i].Body = erased
		}
	}
	for i := range m.rooms {
		if m.rooms[i].UserID == userID {
			m.rooms[i].Body = erased
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
	if m.d != sqlstore.MySQL { // there the foreign key already indexes user_id
		if _, err := m.db.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS messages_user_id ON messages (user_id)"); err != nil {
			return err
		}
	}
	return m.migrateRooms(ctx)
}

// migrateRooms creates the table of the organizations' rooms, org_messages,
// if it is not there: a table of its own, so that a chat database of an
// earlier version keeps its messages table as it is. org_id is Clerk's
// "org_…" ID, with no foreign key: the organizations are usersync's rows,
// and a room outlives its organization's deletion (it answers 404 then).
func (m *sqlMessages) migrateRooms(ctx context.Context) error {
	users := m.users
	var qs []string
	switch m.d {
	case sqlstore.Postgres:
		qs = []string{
			`CREATE TABLE IF NOT EXISTS org_messages (id BIGSERIAL PRIMARY KEY, org_id TEXT COLLATE "C" NOT NULL, user_id TEXT COLLATE "C" NOT NULL REFERENCES ` + users + `(id), body TEXT NOT NULL, created_at BIGINT NOT NULL)`,
			"CREATE INDEX IF NOT EXISTS org_messages_org_id ON org_messages (org_id, id)",
			"CREATE INDEX IF NOT EXISTS org_messages_user_id ON org_messages (user_id)",
		}
	case sqlstore.MySQL:
		qs = []string{"CREATE TABLE IF NOT EXISTS org_messages (id BIGINT AUTO_INCREMENT PRIMARY KEY, org_id VARBINARY(128) NOT NULL, user_id VARBINARY(128) NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL, INDEX org_messages_org_id (org_id, id), FOREIGN KEY (user_id) REFERENCES " + users + "(id)) ENGINE=InnoDB"}
	default:
		qs = []string{
			`CREATE TABLE IF NOT EXISTS org_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, org_id TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES ` + users + `(id), body TEXT NOT NULL, created_at BIGINT NOT NULL)`,
			"CREATE INDEX IF NOT EXISTS org_messages_org_id ON org_messages (org_id, id)",
			"CREATE INDEX IF NOT EXISTS org_messages_user_id ON org_messages (user_id)",
		}
	}
	for _, q := range qs {
		if _, err := m.db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// add inserts the message only while its author is live (insertLive).
func (m *sqlMessages) add(ctx context.Context, userID, body string, at time.Time) (int64, error) {
	return m.insertLive(ctx, "messages", userID, []string{"body", "created_at"}, []any{body, at.UnixMilli()})
}

// addToRoom inserts the message into the room of orgID only while its
// author is live (insertLive). Its membership was checked by the request's
// middleware; one removed since then may have sent this last message, as
// one removed a moment later would have.
func (m *sqlMessages) addToRoom(ctx context.Context, orgID, userID, body string, at time.Time) (int64, error) {
	return m.insertLive(ctx, "org_messages", userID, []string{"org_id", "body", "created_at"}, []any{orgID, body, at.UnixMilli()})
}

// insertLive inserts a row of userID into table, its columns cols set to
// vals, only while the user is live, holding a shared lock on the user's
// row (PostgreSQL, MySQL) until the insert commits: a deletion either
// commits first, and the row is refused with errAuthorDeleted, or waits
// for the row, which its erasure by the change feed's consumer then
// finds. Without the lock a message sent as its author is deleted could
// land after the erasure and keep its body. (SQLite runs one writer at a
// time.) It returns the new row's ID.
func (m *sqlMessages) insertLive(ctx context.Context, table, userID string, cols []string, vals []any) (int64, error) {
	into := "INSERT INTO " + table + " (user_id, " + strings.Join(cols, ", ") + ") SELECT id"
	live := " FROM " + m.users + " WHERE id = %s AND deleted_at IS NULL"
	if m.d == sqlstore.MySQL {
		q := into + strings.Repeat(", ?", len(vals)) + fmt.Sprintf(live, "?") + " LOCK IN SHARE MODE"
		res, err := m.db.ExecContext(ctx, q, append(slices.Clip(vals), userID)...)
		if err != nil {
			return 0, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return 0, cmp.Or(err, errAuthorDeleted)
		}
		return res.LastInsertId()
	}
	q, args := into+strings.Repeat(", ?", len(vals))+fmt.Sprintf(live, "?")+" RETURNING id", append(slices.Clip(vals), userID)
	if m.d == sqlstore.Postgres {
		var ps strings.Builder
		for i := range vals {
			fmt.Fprintf(&ps, ", $%d", i+2)
		}
		q, args = into+ps.String()+fmt.Sprintf(live, "$1")+" FOR SHARE RETURNING id", append([]any{userID}, vals...)
	}
	var id int64
	err := m.db.QueryRowContext(ctx, q, args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errAuthorDeleted
	}
	return id, err
}

func (m *sqlMessages) list(ctx context.Context, after int64, limit int) ([]message, error) {
	return m.query(ctx, fmt.Sprintf("SELECT id, user_id, body, created_at FROM messages WHERE id > %s ORDER BY id LIMIT %s", m.ph(1), m.ph(2)), after, limit)
}

func (m *sqlMessages) listRoom(ctx context.Context, orgID string, after int64, limit int) ([]message, error) {
	return m.query(ctx, fmt.Sprintf("SELECT id, user_id, body, created_at FROM org_messages WHERE org_id = %s AND id > %s ORDER BY id LIMIT %s", m.ph(1), m.ph(2), m.ph(3)), orgID, after, limit)
}

// query returns the messages a SELECT of id, user_id, body and created_at
// finds.
func (m *sqlMessages) query(ctx context.Context, q string, args ...any) ([]message, error) {
	rows, err := m.db.QueryContext(ctx, q, args...)
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
	for _, table := range []string{"messages", "org_messages"} {
		if _, err := m.db.ExecContext(ctx, "UPDATE "+table+" SET body = "+m.ph(1)+" WHERE user_id = "+m.ph(2), erased, userID); err != nil {
			return err
		}
	}
	return nil
}
