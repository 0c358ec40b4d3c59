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

// Store keeps organizations and memberships beside its users, in
// <table>_organizations and <table>_memberships (migration 6, PostgreSQL
// 7): see orgtx.go for how it writes them.
var _ orgs.Store = (*Store)(nil)

// UpsertOrganization implements orgs.Store in one transaction: a locked
// read of the row, and its INSERT or update if the write changes it.
func (s *Store) UpsertOrganization(ctx context.Context, o orgs.Organization) (got orgs.Organization, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsertOrganization)
	defer op.finish(ctx, &err)
	if err := o.Validate(); err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	rows, outcomes, err := s.upsertOrgs(ctx, "upsert organization", []orgs.Organization{o}, true)
	if err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	return rows[0], outcomes[0], nil
}

// UpsertOrganizations implements orgs.Store in one transaction, with a
// locked read of up to 250 rows and a multi-row INSERT of the new ones
// and one of the changed ones per 250 writes.
func (s *Store) UpsertOrganizations(ctx context.Context, os []orgs.Organization) (outcomes []usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsertOrganizations)
	defer op.finish(ctx, &err)
	os = slices.Clone(os) // Validate rewrites metadata: not the caller's
	for i := range os {
		if err := os[i].Validate(); err != nil {
			return nil, fmt.Errorf("organization %d: %w", i, err)
		}
	}
	if len(os) == 0 {
		return []usersync.Outcome{}, nil
	}
	_, outcomes, err = s.upsertOrgs(ctx, "upsert organizations", os, false)
	return outcomes, err
}

// upsertOrgs applies os (validated) in one transaction, and returns the
// rows after each write and its outcome. A write aimed at a tombstone is
// Stale, or fails the call with orgs.ErrDeleted if single.
func (s *Store) upsertOrgs(ctx context.Context, op string, os []orgs.Organization, single bool) ([]orgs.Organization, []usersync.Outcome, error) {
	q := &s.sql.orgs
	if err := s.prepareOrgWrites(ctx, len(os)); err != nil {
		return nil, nil, err
	}
	keys := make([]string, len(os))
	for i := range os {
		o := &os[i]
		o.CreatedAt, o.UpdatedAt, o.DeletedAt = trunc(o.CreatedAt), trunc(o.UpdatedAt), time.Time{}
		keys[i] = orgs.Key(o.Issuer, o.ID)
	}
	rounds := roundsOf(len(os), func(i int) string { return keys[i] })
	got := make([]orgs.Organization, len(os))
	outcomes := make([]usersync.Outcome, len(os))
	err := s.inTx(ctx, op, func(tx *sql.Tx) error {
		clear(got) // from an attempt that rolled back
		clear(outcomes)
		stored := map[string]*orgRow{} // nil: read, not stored
		for _, round := range rounds {
			err := chunks(round, func(part []int) error {
				if err := s.readOrgsInto(ctx, tx, stored, keys, part); err != nil {
					return err
				}
				var inserts, replaces []any
				var nInserts, nReplaces int
				for _, i := range part {
					r := stored[keys[i]]
					next, outcome := decideOrg(&os[i], r)
					switch {
					case next != nil && r == nil:
						inserts, nInserts = orgArgs(inserts, s.dialect, next), nInserts+1
					case next != nil:
						replaces, nReplaces = orgArgs(replaces, s.dialect, next), nReplaces+1
					case r != nil && !r.o.DeletedAt.IsZero() && single:
						return &answer{orgs.ErrDeleted}
					default:
						next = r
					}
					outcomes[i] = outcome
					if next != nil {
						stored[keys[i]] = next
						got[i] = next.o
					}
				}
				if nInserts > 0 {
					if err := s.txExec(ctx, tx, q.insertOrgs(nInserts), inserts...); err != nil {
						return err
					}
				}
				if nReplaces > 0 {
					return s.txExec(ctx, tx, q.replaceOrgs(nReplaces), replaces...)
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

// decideOrg applies the write w to r, the stored row (nil if none), by the
// rules of orgs.Store.UpsertOrganization: it returns the row to write and
// the outcome, or nil and Stale when w changes nothing (r is a tombstone,
// or not older).
func decideOrg(w *orgs.Organization, r *orgRow) (*orgRow, usersync.Outcome) {
	switch {
	case r == nil:
		return &orgRow{o: *w, count: 1}, usersync.Created
	case !r.o.DeletedAt.IsZero() || w.Version <= r.o.Version:
		return nil, usersync.Stale
	}
	next := &orgRow{o: *w, count: r.count + 1}
	next.o.CreatedAt = r.o.CreatedAt // the first write's
	return next, usersync.Updated
}

// prepareOrgWrites prepares the statements of a write of n
// organizations: those of one row, and of a full chunk for a batch that
// has one.
func (s *Store) prepareOrgWrites(ctx context.Context, n int) error {
	q := &s.sql.orgs
	for _, size := range []int{1, orgChunk} {
		if size > n {
			break
		}
		if err := s.prepare(ctx, q.readOrgs(size), q.insertOrgs(size), q.replaceOrgs(size)); err != nil {
			return err
		}
	}
	return nil
}

// readOrgsInto reads, locked, the organizations of keys[i] for i in part
// that stored does not hold, into stored (nil for those not stored).
func (s *Store) readOrgsInto(ctx context.Context, tx *sql.Tx, stored map[string]*orgRow, keys []string, part []int) error {
	var args []any
	for _, i := range part {
		if _, ok := stored[keys[i]]; !ok {
			stored[keys[i]] = nil
			args = append(args, keys[i])
		}
	}
	if len(args) == 0 {
		return nil
	}
	rows, err := s.txQuery(ctx, tx, s.sql.orgs.readOrgs(len(args)), args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var key string
		r, err := scanOrg(rows, &key)
		if err != nil {
			rows.Close()
			return err
		}
		stored[key] = &r
	}
	return errors.Join(rows.Err(), rows.Close())
}

// DeleteOrganization implements orgs.Store in one transaction: the
// organization's tombstone, and one UPDATE that ends its live memberships
// (each a Deleted change of the feed, by the trigger).
func (s *Store) DeleteOrganization(ctx context.Context, issuer, id string, at time.Time) (got orgs.Organization, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opDeleteOrganization)
	defer op.finish(ctx, &err)
	probe := orgs.Organization{Issuer: issuer, ID: id, UpdatedAt: at, Version: 1} // the fields a delete uses
	if err := probe.Validate(); err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	at = trunc(at)
	q := &s.sql.orgs
	key := orgs.Key(issuer, id)
	if err := s.prepare(ctx, q.readOrgs(1), q.insertOrgs(1), q.replaceOrgs(1), q.endOrgMembers); err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	err = s.inTx(ctx, "delete organization", func(tx *sql.Tx) error {
		if err := s.lockKeys(ctx, tx, key); err != nil {
			return err
		}
		stored := map[string]*orgRow{}
		if err := s.readOrgsInto(ctx, tx, stored, []string{key}, []int{0}); err != nil {
			return err
		}
		var next *orgRow
		switch r := stored[key]; {
		case r == nil:
			next = &orgRow{o: orgs.Organization{Issuer: issuer, ID: id, UpdatedAt: at, DeletedAt: at}, count: 1}
			got, outcome = next.o, usersync.Deleted
			if err := s.txExec(ctx, tx, q.insertOrgs(1), orgArgs(nil, s.dialect, next)...); err != nil {
				return err
			}
		case !r.o.DeletedAt.IsZero():
			got, outcome = r.o, usersync.Stale
		default:
			// Issuer, ID, Slug, CreatedAt and the version stay.
			next = &orgRow{o: r.o, count: r.count + 1}
			next.o.Name, next.o.ImageURL, next.o.Metadata = "", "", nil
			next.o.UpdatedAt, next.o.DeletedAt = at, at
			got, outcome = next.o, usersync.Deleted
			if err := s.txExec(ctx, tx, q.replaceOrgs(1), orgArgs(nil, s.dialect, next)...); err != nil {
				return err
			}
		}
		// Also after a Stale delete: a membership a Galera node wrote
		// meanwhile (see mysqlDialect's orgs) ends now.
		return s.txExec(ctx, tx, q.endOrgMembers, s.dialect.timeArg(at), s.dialect.timeArg(at), key)
	})
	if err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	return got, outcome, nil
}

// Organization implements orgs.Store in one indexed read.
func (s *Store) Organization(ctx context.Context, issuer, id string) (o orgs.Organization, err error) {
	ctx, op := s.tel.start(ctx, opOrganization)
	defer op.finish(ctx, &err)
	if !lookupKey(issuer, id, maxOrgIDLen) {
		if err := ctx.Err(); err != nil {
			return orgs.Organization{}, err
		}
		return orgs.Organization{}, orgs.ErrNotFound
	}
	st, err := s.stmt(ctx, s.sql.orgs.getOrg)
	if err != nil {
		return orgs.Organization{}, err
	}
	var r orgRow
	attempts, err := s.try(ctx, func() (err error) {
		r, err = scanOrg(st.QueryRowContext(ctx, orgs.Key(issuer, id)))
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return orgs.Organization{}, orgs.ErrNotFound
	case err != nil:
		return orgs.Organization{}, s.wrapN("get organization", attempts, err)
	case !r.o.DeletedAt.IsZero():
		return orgs.Organization{}, orgs.ErrDeleted
	}
	return r.o, nil
}

// Organizations implements orgs.Store with keyset pagination on the
// primary key, whose keys of one issuer are in the order of their IDs.
func (s *Store) Organizations(ctx context.Context, issuer, after string, limit int) (out []orgs.Organization, err error) {
	ctx, op := s.tel.start(ctx, opOrganizations)
	defer op.finish(ctx, &err)
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d", usersync.ErrInvalid, limit)
	}
	if !storable(after) {
		return nil, fmt.Errorf("%w: after is not an organization ID", usersync.ErrInvalid)
	}
	issuer = strings.TrimRight(issuer, "/")
	if issuer == "" || len(issuer) > maxIssuerLen || !storable(issuer) {
		return nil, ctx.Err() // no organization of an issuer no write could store
	}
	st, err := s.stmt(ctx, s.sql.orgs.listOrgs)
	if err != nil {
		return nil, err
	}
	attempts, err := s.try(ctx, func() error {
		out = out[:0]
		rows, err := st.QueryContext(ctx, orgs.Key(issuer, after), issuer+"}", issuer, limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			r, err := scanOrg(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, r.o)
		}
		return errors.Join(rows.Err(), rows.Close())
	})
	if err != nil {
		return nil, s.wrapN("list organizations", attempts, err)
	}
	return out, nil
}

// The widths of the key columns (package orgs's limits): a lookup of a
// longer key finds nothing, without asking the database.
const (
	maxIssuerLen      = 255
	maxOrgIDLen       = 128
	maxUserSubjectLen = 255
)

// lookupKey reports whether a write could have stored the key of issuer
// and id (id at most maxLen bytes): both present, valid UTF-8 without NUL,
// short enough.
func lookupKey(issuer, id string, maxLen int) bool {
	return issuer != "" && len(issuer) <= maxIssuerLen && storable(issuer) && id != "" && len(id) <= maxLen && storable(id)
}
