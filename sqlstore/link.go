package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/usersync/usersync"
)

// LinkConfig describes an app's own users table, for NewLink. Dialect,
// Table, Key and UserID are required.
type LinkConfig struct {
	// Dialect is the database's, as in Config.
	Dialect Dialect
	// Table is the app's users table: an identifier, or one qualified by
	// its schema or database, as Config.Table.
	Table string
	// Key is the table's primary key column: what the provider's external
	// ID names (Clerk's external_id: the app's ID of the person, set when
	// its users were imported into Clerk).
	Key string
	// UserID is the column that holds usersync's user ID once the row is
	// linked: NULL until then, and UNIQUE, so that two users never take
	// one row.
	UserID string
	// Email, if set, is the table's email column: a row not linked by the
	// external ID is linked by the user's verified email, compared without
	// regard to case. Default: no linking by email.
	Email string
	// ParseKey turns an external ID into a value of Key, and reports
	// false for one that cannot be (an integer key and an external ID
	// that is not a number: PostgreSQL would fail the transaction).
	// Default: the external ID as it is.
	ParseKey func(externalID string) (any, bool)
}

// Link finds an app's own row of a usersync user, linking it on first
// sight, inside a Hook's transaction: the recipe for an app that had a
// users table before usersync. Make one with NewLink. It is safe for
// concurrent use.
type Link struct {
	parse                            func(string) (any, bool)
	byUserID, byEmail, claim, rowKey string
}

// NewLink returns the Link of the table cfg describes. A missing or
// malformed name is an error wrapping usersync.ErrInvalid.
func NewLink(cfg LinkConfig) (*Link, error) {
	if !cfg.Dialect.valid() || cfg.Key == "" || cfg.UserID == "" {
		return nil, fmt.Errorf("%w: sqlstore.LinkConfig needs a known Dialect, the Key and the UserID columns", usersync.ErrInvalid)
	}
	table, err := parseTableName(cfg.Table)
	if err != nil {
		return nil, err
	}
	for _, c := range []string{cfg.Key, cfg.UserID, cfg.Email} {
		if c != "" && !identifier.MatchString(c) {
			return nil, fmt.Errorf("%w: sqlstore.LinkConfig: column %q is not an identifier", usersync.ErrInvalid, c)
		}
	}
	d := dialects[cfg.Dialect]
	t, key, uid, p := table.quoted(d), d.quote(cfg.Key), d.quote(cfg.UserID), d.placeholder
	l := &Link{
		parse:    cfg.ParseKey,
		byUserID: fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", key, t, uid, p(1)),
		claim:    fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s = %s AND %s IS NULL", t, uid, p(1), key, p(2), uid),
		rowKey:   fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", key, t, key, p(1)),
	}
	if cfg.Email != "" {
		// A locking read where the database has one: it sees the rows as
		// committed now, not as MySQL's snapshot of the transaction had
		// them, so a row another user took meanwhile is passed over.
		lock := " FOR UPDATE"
		if cfg.Dialect == SQLite {
			lock = "" // one writer at a time: nothing to lock against
		}
		l.byEmail = fmt.Sprintf("SELECT %s FROM %s WHERE LOWER(%s) = LOWER(%s) AND %s IS NULL ORDER BY %s LIMIT 1%s",
			key, t, d.quote(cfg.Email), p(1), uid, key, lock)
	}
	if l.parse == nil {
		l.parse = func(s string) (any, bool) { return s, true }
	}
	return l, nil
}

// Find returns the key of the app's row of c's user, in tx (a Hook's), or
// nil if the app has none. In order, it takes the row already linked to
// the user's ID; else the row whose key is the user's external ID, if no
// other user holds it; else (with LinkConfig.Email) the unlinked row of
// the user's verified email, the lowest key first; and links the row it
// takes to the user's ID. A tombstone keeps its external ID, so a user
// deleted before they were ever linked is still found by it.
//
// Two writes of one user never link at once: the user's row is locked by
// the write until its transaction ends (on a Galera cluster, the second to
// commit usually runs again; see docs/operations.md for a known defect).
// Two users never take one row: a link is taken only from NULL.
func (l *Link) Find(ctx context.Context, tx *sql.Tx, c usersync.Change) (key any, err error) {
	if key, err = l.one(ctx, tx, l.byUserID, c.UserID); key != nil || err != nil {
		return key, err
	}
	if k, ok := l.parse(c.ExternalID); ok && c.ExternalID != "" {
		if key, err = l.one(ctx, tx, l.rowKey, k); err != nil {
			return nil, err
		}
		if key != nil {
			if taken, err := l.take(ctx, tx, key, c.UserID); taken || err != nil {
				return ifTaken(key, taken), err
			}
		}
	}
	if l.byEmail == "" || !c.User.EmailVerified || c.User.Email == "" {
		return nil, nil
	}
	// Another user may take the row between the read and the claim: then
	// the next unlinked row of the address, if any.
	for range 3 {
		if key, err = l.one(ctx, tx, l.byEmail, c.User.Email); key == nil || err != nil {
			return nil, err
		}
		if taken, err := l.take(ctx, tx, key, c.UserID); taken || err != nil {
			return ifTaken(key, taken), err
		}
	}
	return nil, nil
}

// one runs a query of one key, and returns it or nil.
func (l *Link) one(ctx context.Context, tx *sql.Tx, query string, arg any) (any, error) {
	var key any
	err := tx.QueryRowContext(ctx, query, arg).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if b, ok := key.([]byte); ok { // a driver's text form: not to be reused
		key = string(b)
	}
	return key, err
}

// take links the row of key to userID, if no user holds it.
func (l *Link) take(ctx context.Context, tx *sql.Tx, key any, userID string) (bool, error) {
	res, err := tx.ExecContext(ctx, l.claim, userID, key)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func ifTaken(key any, taken bool) any {
	if taken {
		return key
	}
	return nil
}
