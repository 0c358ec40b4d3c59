package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// UpsertMembership implements orgs.Store in one transaction: locked reads
// of the organization's and the user's tombstones and of the row (and, on
// PostgreSQL, the locks of lockKeys first), and the row's INSERT or
// update if the write changes it.
func (s *Store) UpsertMembership(ctx context.Context, m orgs.Membership) (got orgs.Membership, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsertMembership)
	defer op.finish(ctx, &err)
	if err := m.Validate(); err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	rows, outcomes, err := s.upsertMembers(ctx, "upsert membership", []orgs.Membership{m}, true)
	if err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	return rows[0], outcomes[0], nil
}

// UpsertMemberships implements orgs.Store in one transaction, with three
// locked reads (organizations, users, memberships) of up to 250 rows and a
// multi-row INSERT of the new rows and one of the changed ones per 250
// writes.
func (s *Store) UpsertMemberships(ctx context.Context, ms []orgs.Membership) (outcomes []usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsertMemberships)
	defer op.finish(ctx, &err)
	ms = slices.Clone(ms) // Validate rewrites metadata: not the caller's
	for i := range ms {
		if err := ms[i].Validate(); err != nil {
			return nil, fmt.Errorf("membership %d: %w", i, err)
		}
	}
	if len(ms) == 0 {
		return []usersync.Outcome{}, nil
	}
	_, outcomes, err = s.upsertMembers(ctx, "upsert memberships", ms, false)
	return outcomes, err
}

// memberKeys are the keys of a membership: its organization's, its
// user's (token identifier), and the two as one string, for maps.
type memberKey struct{ org, user, row string }

func keyOf(m *orgs.Membership) memberKey {
	k := memberKey{org: orgs.Key(m.Issuer, m.OrganizationID), user: usersync.TokenIdentifier(m.Issuer, m.UserSubject)}
	k.row = k.org + "\x00" + k.user // keys hold no NUL
	return k
}

// upsertMembers applies ms (validated) in one transaction, and returns
// the rows after each write and its outcome. A write refused with
// orgs.ErrDeleted is Stale, or fails the call if single.
func (s *Store) upsertMembers(ctx context.Context, op string, ms []orgs.Membership, single bool) ([]orgs.Membership, []usersync.Outcome, error) {
	q := &s.sql.orgs
	for _, size := range []int{1, orgChunk} {
		if size > len(ms) {
			break
		}
		if err := s.prepare(ctx, q.orgStates(size), q.userStates(size), q.readMembers(size), q.insertMembers(size), q.replaceMembers(size)); err != nil {
			return nil, nil, err
		}
	}
	keys := make([]memberKey, len(ms))
	var lock []string // each organization and user, for lockKeys
	for i := range ms {
		m := &ms[i]
		m.CreatedAt, m.UpdatedAt, m.DeletedAt = trunc(m.CreatedAt), trunc(m.UpdatedAt), time.Time{}
		keys[i] = keyOf(m)
		lock = append(lock, keys[i].org, keys[i].user)
	}
	rounds := roundsOf(len(ms), func(i int) string { return keys[i].row })
	got := make([]orgs.Membership, len(ms))
	outcomes := make([]usersync.Outcome, len(ms))
	err := s.inTx(ctx, op, func(tx *sql.Tx) error {
		clear(got) // from an attempt that rolled back
		clear(outcomes)
		if err := s.lockKeys(ctx, tx, lock...); err != nil {
			return err
		}
		deleted := map[string]bool{} // organizations' and users' keys read: a tombstone?
		stored := map[string]*memberRow{}
		for _, round := range rounds {
			err := chunks(round, func(part []int) error {
				if err := s.readMembersInto(ctx, tx, deleted, stored, keys, part); err != nil {
					return err
				}
				var inserts, replaces []any
				var nInserts, nReplaces int
				for _, i := range part {
					k := keys[i]
					r := stored[k.row]
					next, outcome, refused := decideMember(&ms[i], r, deleted[k.org] || deleted[k.user])
					switch {
					case refused && single:
						return &answer{orgs.ErrDeleted}
					case next != nil && r == nil:
						inserts, nInserts = memberArgs(inserts, s.dialect, next), nInserts+1
					case next != nil:
						replaces, nReplaces = memberArgs(replaces, s.dialect, next), nReplaces+1
					default:
						next = r
					}
					outcomes[i] = outcome
					if next != nil {
						stored[k.row] = next
						got[i] = next.m
					}
				}
				if nInserts > 0 {
					if err := s.txExec(ctx, tx, q.insertMembers(nInserts), inserts...); err != nil {
						return err
					}
				}
				if nReplaces > 0 {
					return s.txExec(ctx, tx, q.replaceMembers(nReplaces), replaces...)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return got, outcomes, nil
}

// decideMember applies the write w to r, the stored row (nil if none), by
// the rules of orgs.Store.UpsertMembership, gone being whether its
// organization or user is a tombstone: it returns the row to write and
// the outcome, or nil and Stale when w changes nothing, and whether
// UpsertMembership refuses it with orgs.ErrDeleted.
func decideMember(w *orgs.Membership, r *memberRow, gone bool) (next *memberRow, outcome usersync.Outcome, refused bool) {
	switch {
	case gone:
		return nil, usersync.Stale, true
	case r == nil:
		return &memberRow{m: *w, count: 1}, usersync.Created, false
	case r.m.ID == w.ID && !r.m.DeletedAt.IsZero():
		return nil, usersync.Stale, true
	case r.m.ID == w.ID && w.Version > r.m.Version:
		next = &memberRow{m: *w, count: r.count + 1}
		next.m.CreatedAt = r.m.CreatedAt
		return next, usersync.Updated, false
	case r.m.ID != w.ID && later(w, &r.m):
		// The user left and joined again: the later membership holds the
		// row, whatever the versions; reviving a tombstone creates it.
		outcome = usersync.Updated
		if !r.m.DeletedAt.IsZero() {
			outcome = usersync.Created
		}
		return &memberRow{m: *w, count: r.count + 1}, outcome, false
	}
	return nil, usersync.Stale, false
}

// later reports whether membership a was created after b: by CreatedAt,
// then by ID, byte for byte.
func later(a, b *orgs.Membership) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return a.ID > b.ID
}

// readMembersInto reads, for the memberships of keys[i] for i in part,
// what stored and deleted do not hold: whether their organizations and
// users are tombstones (into deleted, locked on MySQL), and the rows,
// locked (into stored, nil for those not stored).
func (s *Store) readMembersInto(ctx context.Context, tx *sql.Tx, deleted map[string]bool, stored map[string]*memberRow, keys []memberKey, part []int) error {
	q := &s.sql.orgs
	var orgKeys, userKeys, rowKeys []any
	for _, i := range part {
		k := keys[i]
		if _, ok := deleted[k.org]; !ok {
			deleted[k.org] = false
			orgKeys = append(orgKeys, k.org)
		}
		if _, ok := deleted[k.user]; !ok {
			deleted[k.user] = false
			userKeys = append(userKeys, k.user)
		}
		if _, ok := stored[k.row]; !ok {
			stored[k.row] = nil
			rowKeys = append(rowKeys, k.org, k.user)
		}
	}
	if err := s.readTombstones(ctx, tx, q.orgStates, orgKeys, deleted); err != nil {
		return err
	}
	if err := s.readTombstones(ctx, tx, q.userStates, userKeys, deleted); err != nil {
		return err
	}
	if len(rowKeys) == 0 {
		return nil
	}
	rows, err := s.txQuery(ctx, tx, q.readMembers(len(rowKeys)/2), rowKeys...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var org, user string
		r, err := scanMember(rows, &org, &user)
		if err != nil {
			rows.Close()
			return err
		}
		stored[org+"\x00"+user] = &r
	}
	return errors.Join(rows.Err(), rows.Close())
}

// readTombstones runs query(len(keys)), a read of keys and their
// deleted_at, and marks each tombstone in deleted.
func (s *Store) readTombstones(ctx context.Context, tx *sql.Tx, query func(int) string, keys []any, deleted map[string]bool) error {
	if len(keys) == 0 {
		return nil
	}
	rows, err := s.txQuery(ctx, tx, query(len(keys)), keys...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var key string
		var at time.Time
		if err := rows.Scan(&key, (*timeColumn)(&at)); err != nil {
			rows.Close()
			return err
		}
		deleted[key] = !at.IsZero()
	}
	return errors.Join(rows.Err(), rows.Close())
}

// DeleteMembership implements orgs.Store in one transaction: a locked
// read of the row, and its tombstone if the rules make one.
func (s *Store) DeleteMembership(ctx context.Context, m orgs.Membership) (got orgs.Membership, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opDeleteMembership)
	defer op.finish(ctx, &err)
	// The fields a delete uses, and what its tombstone keeps.
	w := orgs.Membership{Issuer: m.Issuer, OrganizationID: m.OrganizationID, UserSubject: m.UserSubject, ID: m.ID,
		CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, Version: 1}
	if err := w.Validate(); err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	w.Version = max(m.Version, 0)
	w.CreatedAt, w.UpdatedAt = trunc(w.CreatedAt), trunc(w.UpdatedAt)
	w.DeletedAt = w.UpdatedAt
	q := &s.sql.orgs
	if err := s.prepare(ctx, q.readMembers(1), q.insertMembers(1), q.replaceMembers(1)); err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	k := keyOf(&w)
	err = s.inTx(ctx, "delete membership", func(tx *sql.Tx) error {
		rows, err := s.txQuery(ctx, tx, q.readMembers(1), k.org, k.user)
		if err != nil {
			return err
		}
		var r *memberRow
		for rows.Next() {
			var org, user string
			row, err := scanMember(rows, &org, &user)
			if err != nil {
				rows.Close()
				return err
			}
			r = &row
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		var next *memberRow
		switch {
		case r == nil:
			next, outcome = &memberRow{m: w, count: 1}, usersync.Deleted
		case r.m.ID == w.ID && r.m.DeletedAt.IsZero():
			// Its key, ID, CreatedAt and version stay.
			next, outcome = &memberRow{m: r.m, count: r.count + 1}, usersync.Deleted
			next.m.Role, next.m.Permissions, next.m.Metadata = "", nil, nil
			next.m.UpdatedAt, next.m.DeletedAt = w.UpdatedAt, w.DeletedAt
		case r.m.ID != w.ID && later(&w, &r.m):
			// The row becomes m's tombstone, so that a late write of m
			// changes nothing; a tombstone of an earlier membership was
			// deleted already (no change of the feed).
			next, outcome = &memberRow{m: w, count: r.count + 1}, usersync.Deleted
			if !r.m.DeletedAt.IsZero() {
				next.count, outcome = r.count, usersync.Stale
			}
		default: // a tombstone of m, or a later membership's row
			got, outcome = r.m, usersync.Stale
			return nil
		}
		got = next.m
		if r == nil {
			return s.txExec(ctx, tx, q.insertMembers(1), memberArgs(nil, s.dialect, next)...)
		}
		return s.txExec(ctx, tx, q.replaceMembers(1), memberArgs(nil, s.dialect, next)...)
	})
	if err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	return got, outcome, nil
}

// endUserMemberships ends, in tx, the live memberships of the user with
// token identifier key: their tombstones, each a Deleted change of the
// feed (the trigger). The user's Delete runs it after the user's
// tombstone, in its transaction, which took lockKeys of key first.
func (s *Store) endUserMemberships(ctx context.Context, tx *sql.Tx, key string, at time.Time) error {
	at = trunc(at)
	return s.txExec(ctx, tx, s.sql.orgs.endUserMembers, s.dialect.timeArg(at), s.dialect.timeArg(at), key)
}

// Member implements orgs.Store in one indexed read: the organization
// joined with the user's membership by their primary keys.
func (s *Store) Member(ctx context.Context, issuer, orgID, userSubject string) (mem orgs.Member, err error) {
	ctx, op := s.tel.start(ctx, opMember)
	defer op.finish(ctx, &err)
	if !lookupKey(issuer, orgID, maxOrgIDLen) {
		if err := ctx.Err(); err != nil {
			return orgs.Member{}, err
		}
		return orgs.Member{}, orgs.ErrNotFound
	}
	canonical := strings.TrimRight(issuer, "/")
	userKey := usersync.TokenIdentifier(canonical, userSubject)
	if !lookupKey(issuer, userSubject, maxUserSubjectLen) {
		// No membership has it: the organization alone answers (the
		// empty key, which no row has, is safe to send).
		userKey = ""
	}
	st, err := s.stmt(ctx, s.sql.orgs.member)
	if err != nil {
		return orgs.Member{}, err
	}
	o := &mem.Organization
	m := &mem.Membership
	var orgVersion int64
	var memberVersion intColumn
	dest := [...]any{&o.Name, &o.Slug, &o.ImageURL, (*jsonColumn)(&o.Metadata), &orgVersion,
		(*timeColumn)(&o.CreatedAt), (*timeColumn)(&o.UpdatedAt), (*timeColumn)(&o.DeletedAt),
		(*textColumn)(&m.ID), (*textColumn)(&m.Role), (*permissionsColumn)(&m.Permissions), (*jsonColumn)(&m.Metadata), &memberVersion,
		(*timeColumn)(&m.CreatedAt), (*timeColumn)(&m.UpdatedAt), (*timeColumn)(&m.DeletedAt)}
	attempts, err := s.try(ctx, func() error {
		return st.QueryRowContext(ctx, userKey, orgs.Key(canonical, orgID)).Scan(dest[:]...)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return orgs.Member{}, orgs.ErrNotFound
	case err != nil:
		return orgs.Member{}, s.wrapN("get member", attempts, err)
	case !o.DeletedAt.IsZero():
		return orgs.Member{}, orgs.ErrDeleted
	case m.ID == "" || !m.DeletedAt.IsZero():
		return orgs.Member{}, orgs.ErrNotMember
	}
	o.Issuer, o.ID, o.Version = canonical, orgID, usersync.Version(orgVersion)
	m.Issuer, m.OrganizationID, m.UserSubject, m.Version = canonical, orgID, userSubject, usersync.Version(memberVersion)
	return mem, nil
}

// Memberships implements orgs.Store with keyset pagination on the primary
// key, whose user keys of one organization are in the order of their
// subjects.
func (s *Store) Memberships(ctx context.Context, issuer, orgID, after string, limit int) (out []orgs.Membership, err error) {
	ctx, op := s.tel.start(ctx, opMemberships)
	defer op.finish(ctx, &err)
	if err := checkPage(after, limit); err != nil {
		return nil, err
	}
	if !lookupKey(issuer, orgID, maxOrgIDLen) {
		return nil, ctx.Err() // no write could store the organization
	}
	st, err := s.stmt(ctx, s.sql.orgs.listMembers)
	if err != nil {
		return nil, err
	}
	attempts, err := s.try(ctx, func() error {
		out = out[:0]
		rows, err := st.QueryContext(ctx, orgs.Key(issuer, orgID), usersync.TokenIdentifier(issuer, after), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			r, err := scanMember(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, r.m)
		}
		return errors.Join(rows.Err(), rows.Close())
	})
	if err != nil {
		return nil, s.wrapN("list memberships", attempts, err)
	}
	return out, nil
}

// UserMemberships implements orgs.Store with keyset pagination on the
// index of users' memberships, whose organization keys of one user are in
// the order of their IDs, joined with the organizations.
func (s *Store) UserMemberships(ctx context.Context, issuer, userSubject, after string, limit int) (out []orgs.Member, err error) {
	ctx, op := s.tel.start(ctx, opUserMemberships)
	defer op.finish(ctx, &err)
	if err := checkPage(after, limit); err != nil {
		return nil, err
	}
	if !lookupKey(issuer, userSubject, maxUserSubjectLen) {
		return nil, ctx.Err() // no write could store the user's memberships
	}
	st, err := s.stmt(ctx, s.sql.orgs.userMembers)
	if err != nil {
		return nil, err
	}
	attempts, err := s.try(ctx, func() error {
		out = out[:0]
		rows, err := st.QueryContext(ctx, usersync.TokenIdentifier(issuer, userSubject), orgs.Key(issuer, after), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var o orgRow
			var m memberRow
			var ov, mv int64
			dest := append(orgDest(&o, &ov), memberDest(&m, &mv)...)
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return err
			}
			o.o.Version, m.m.Version = usersync.Version(ov), usersync.Version(mv)
			out = append(out, orgs.Member{Organization: o.o, Membership: m.m})
		}
		return errors.Join(rows.Err(), rows.Close())
	})
	if err != nil {
		return nil, s.wrapN("list the user's memberships", attempts, err)
	}
	return out, nil
}

// checkPage checks the after and limit of a listing.
func checkPage(after string, limit int) error {
	if limit < 1 {
		return fmt.Errorf("%w: limit %d", usersync.ErrInvalid, limit)
	}
	if !storable(after) {
		return fmt.Errorf("%w: after is not an ID", usersync.ErrInvalid)
	}
	return nil
}
