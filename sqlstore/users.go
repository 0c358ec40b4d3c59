package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

// Get implements usersync.Store.
func (s *Store) Get(ctx context.Context, id string) (u usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGet)
	defer op.finish(ctx, &err)
	return s.liveUser(ctx, "get", s.sql.getByID, id)
}

// GetByExternalID implements usersync.Store.
func (s *Store) GetByExternalID(ctx context.Context, issuer, externalID string) (u usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGetByExternalID)
	defer op.finish(ctx, &err)
	if externalID == "" || !storable(issuer) || !storable(externalID) {
		if err := ctx.Err(); err != nil {
			return usersync.User{}, err
		}
		return usersync.User{}, usersync.ErrNotFound
	}
	u, err = s.queryUser(ctx, "get by external ID", s.sql.getByExternalID, issuer, externalID)
	if err == nil && !u.DeletedAt.IsZero() {
		return usersync.User{}, usersync.ErrDeleted
	}
	return u, err
}

// GetByTokenIdentifier implements usersync.Store.
func (s *Store) GetByTokenIdentifier(ctx context.Context, tokenIdentifier string) (u usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGetByTokenIdentifier)
	defer op.finish(ctx, &err)
	return s.liveUser(ctx, "get by token identifier", s.sql.getByToken, tokenIdentifier)
}

// maxInList bounds the bind parameters of one GetMany query, well under
// every dialect's limit.
const maxInList = 1000

// GetMany implements usersync.Store. Up to 1,000 distinct IDs cost one
// query; more are fetched in chunks of 1,000.
func (s *Store) GetMany(ctx context.Context, ids []string) (users map[string]usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGetMany)
	defer op.finish(ctx, &err)
	seen := make(map[string]struct{}, len(ids))
	uniq := make([]any, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok && storable(id) {
			seen[id] = struct{}{}
			uniq = append(uniq, id)
		}
	}
	out := make(map[string]usersync.User, len(uniq))
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for len(uniq) > 0 {
		chunk := uniq[:min(len(uniq), maxInList)]
		uniq = uniq[len(chunk):]
		var q strings.Builder
		q.WriteString(s.sql.getManyPrefix)
		for i := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(s.dialect.placeholder(i + 1))
		}
		q.WriteByte(')')
		attempts, err := s.try(ctx, func() error {
			rows, err := s.db.QueryContext(ctx, q.String(), chunk...)
			if err != nil {
				return err
			}
			return scanUsers(rows, func(u usersync.User) error {
				out[u.ID] = u
				return nil
			})
		})
		if err != nil {
			return nil, s.wrapN("get many", attempts, err)
		}
	}
	return out, nil
}

// List implements usersync.Store with keyset pagination on the primary key.
func (s *Store) List(ctx context.Context, after string, limit int) (users []usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opList)
	defer op.finish(ctx, &err)
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d", usersync.ErrInvalid, limit)
	}
	if !storable(after) {
		return nil, fmt.Errorf("%w: after is not an ID", usersync.ErrInvalid)
	}
	st, err := s.stmt(ctx, s.sql.list)
	if err != nil {
		return nil, err
	}
	var out []usersync.User
	attempts, err := s.try(ctx, func() error {
		out = out[:0]
		rows, err := st.QueryContext(ctx, after, limit)
		if err != nil {
			return err
		}
		return scanUsers(rows, func(u usersync.User) error {
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, s.wrapN("list", attempts, err)
	}
	return out, nil
}

// Count implements usersync.Store.
func (s *Store) Count(ctx context.Context) (n int, err error) {
	ctx, op := s.tel.start(ctx, opCount)
	defer op.finish(ctx, &err)
	st, err := s.stmt(ctx, s.sql.count)
	if err != nil {
		return 0, err
	}
	attempts, err := s.try(ctx, func() error { return st.QueryRowContext(ctx).Scan(&n) })
	if err != nil {
		return 0, s.wrapN("count", attempts, err)
	}
	return n, nil
}

// queryUser runs a prepared single-row query and returns the row, live or
// tombstone.
func (s *Store) queryUser(ctx context.Context, op, query string, args ...any) (usersync.User, error) {
	return s.queryUserIn(ctx, nil, op, query, args...)
}

// queryUserIn is queryUser in tx (nil: none).
func (s *Store) queryUserIn(ctx context.Context, tx *sql.Tx, op, query string, args ...any) (usersync.User, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return usersync.User{}, err
	}
	var u usersync.User
	attempts, err := s.run(ctx, tx, func() (err error) {
		u, err = scanUser(in(ctx, tx, st).QueryRowContext(ctx, args...))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return usersync.User{}, usersync.ErrNotFound
	}
	if err != nil {
		return usersync.User{}, s.wrapN(op, attempts, err)
	}
	return u, nil
}

// liveUser runs queryUser and fails with ErrDeleted for a tombstone.
func (s *Store) liveUser(ctx context.Context, op, query string, key string) (usersync.User, error) {
	if !storable(key) {
		if err := ctx.Err(); err != nil {
			return usersync.User{}, err
		}
		return usersync.User{}, usersync.ErrNotFound
	}
	u, err := s.queryUser(ctx, op, query, key)
	if err == nil && !u.DeletedAt.IsZero() {
		return usersync.User{}, usersync.ErrDeleted
	}
	return u, err
}

// Upsert implements usersync.Store in one statement. If the database
// refuses the write's metadata though Validate takes it (a value Validate
// cannot foresee: a database of another version, a CHECK or trigger of
// the app's), the write runs again without it: the
// stored metadata and its version stay, the rest applies, and
// Config.Logger gets a warning that names the field, never its value.
func (s *Store) Upsert(ctx context.Context, w usersync.Write) (u usersync.User, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsert)
	defer op.finish(ctx, &err)
	if err := w.Validate(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	u, outcome, err = s.write(ctx, "upsert", s.sql.upsert, &w, w.Fields, time.Time{}, usersync.Updated)
	if err != nil && w.Profile.Metadata != nil {
		if r := refused(err); r != nil {
			u, outcome, err = s.upsertWithoutMetadata(ctx, w, err, r)
		}
	}
	if err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	if !u.DeletedAt.IsZero() {
		return usersync.User{}, usersync.Stale, usersync.ErrDeleted
	}
	return u, outcome, nil
}

// upsertWithoutMetadata runs w again without its metadata, after the
// database refused a value of it (err, refusal r): Validate vouches for
// every other value, and for the metadata every database it knows of
// holds, but cannot foresee every database's rules. As the
// Syncer does with a field no store can hold, the field is dropped (its
// stored value and version stay; a new user gets none) and the rest of
// the write applies, with a warning that names the field, never its
// value. If the database refuses the write without it too, err is
// returned. It runs only after a refusal: the normal path costs nothing.
func (s *Store) upsertWithoutMetadata(ctx context.Context, w usersync.Write, err error, r *refusal) (usersync.User, usersync.Outcome, error) {
	carried := w.Fields&usersync.FieldMetadata != 0
	w.Fields &^= usersync.FieldMetadata
	w.Profile.Metadata = nil
	u, outcome, err2 := s.write(ctx, "upsert", s.sql.upsert, &w, w.Fields, time.Time{}, usersync.Updated)
	if refused(err2) != nil {
		return usersync.User{}, usersync.Stale, err // not the metadata's doing
	}
	if err2 == nil {
		s.log.WarnContext(ctx, "usersync/sqlstore: the database refused the metadata of a write; dropped it and applied the rest",
			"field", "metadata", "carried", carried, "table", s.table.String(), "code", r.code)
	}
	return u, outcome, err2
}

// Delete implements usersync.Store in one transaction: the tombstone, the
// end of the user's memberships (orgs.Store), the hook's statements and,
// when it deleted the user (a tombstone of a key never seen too), the
// ending of every session of the user (sessions.Store), unless one is
// recorded.
func (s *Store) Delete(ctx context.Context, w usersync.Write) (u usersync.User, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opDelete)
	defer op.finish(ctx, &err)
	if err := w.Validate(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	// A tombstone keeps the keys and the external ID, and clears the rest
	// of the profile.
	t := usersync.Write{ID: w.ID, TokenIdentifier: w.TokenIdentifier, Issuer: w.Issuer, Subject: w.Subject, At: w.At}
	u, outcome, err = s.write(ctx, "delete", s.sql.tombstone, &t, 0, w.At, usersync.Deleted)
	if outcome == usersync.Created {
		outcome = usersync.Deleted // a tombstone for a key never seen
	}
	return u, outcome, err
}
