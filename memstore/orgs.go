package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

var _ orgs.Store = (*Store)(nil)

// orgData holds the organizations and memberships. The Store's lock
// guards it.
type orgData struct {
	orgs map[string]*orgs.Organization // by orgs.Key(issuer, id)
	// members holds every membership row by its keys, and byOrg and
	// byUser index the same rows by organization and by user.
	members map[memberKey]*orgs.Membership
	byOrg   map[string]map[string]*orgs.Membership // org key → user subject → row
	byUser  map[string]map[string]*orgs.Membership // user key → org ID → row
}

// memberKey is the key of a membership row: its organization's and its
// user's keys.
type memberKey struct{ org, user string }

func newOrgData() orgData {
	return orgData{
		orgs:    map[string]*orgs.Organization{},
		members: map[memberKey]*orgs.Membership{},
		byOrg:   map[string]map[string]*orgs.Membership{},
		byUser:  map[string]map[string]*orgs.Membership{},
	}
}

// milli truncates t to the millisecond: the precision every store keeps.
func milli(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

func cloneOrg(o orgs.Organization) orgs.Organization {
	o.Metadata = slices.Clone(o.Metadata)
	return o
}

func cloneMembership(m orgs.Membership) orgs.Membership {
	m.Metadata = slices.Clone(m.Metadata)
	m.Permissions = slices.Clone(m.Permissions)
	return m
}

// UpsertOrganization implements orgs.Store.
func (s *Store) UpsertOrganization(ctx context.Context, o orgs.Organization) (orgs.Organization, usersync.Outcome, error) {
	if err := o.Validate(); err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	if err := ctx.Err(); err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upsertOrg(&o)
}

// UpsertOrganizations implements orgs.Store.
func (s *Store) UpsertOrganizations(ctx context.Context, os []orgs.Organization) ([]usersync.Outcome, error) {
	os = slices.Clone(os) // Validate rewrites what it checks: not the caller's
	for i := range os {
		if err := os[i].Validate(); err != nil {
			return nil, fmt.Errorf("organization %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	outcomes := make([]usersync.Outcome, len(os))
	for i := range os {
		_, outcomes[i], _ = s.upsertOrg(&os[i]) // a tombstone: Stale
	}
	return outcomes, nil
}

// upsertOrg applies a valid write. The caller holds the write lock.
func (s *Store) upsertOrg(o *orgs.Organization) (orgs.Organization, usersync.Outcome, error) {
	o.CreatedAt, o.UpdatedAt = milli(o.CreatedAt), milli(o.UpdatedAt)
	key := orgs.Key(o.Issuer, o.ID)
	r := s.org.orgs[key]
	switch {
	case r == nil:
		r = new(orgs.Organization)
		*r = cloneOrg(*o)
		r.DeletedAt = time.Time{}
		s.org.orgs[key] = r
		s.changedOrg(usersync.Created, r)
		return cloneOrg(*r), usersync.Created, nil
	case !r.DeletedAt.IsZero():
		return cloneOrg(*r), usersync.Stale, orgs.ErrDeleted
	case o.Version <= r.Version:
		return cloneOrg(*r), usersync.Stale, nil
	}
	created := r.CreatedAt
	*r = cloneOrg(*o)
	r.CreatedAt, r.DeletedAt = created, time.Time{}
	s.changedOrg(usersync.Updated, r)
	return cloneOrg(*r), usersync.Updated, nil
}

// DeleteOrganization implements orgs.Store.
func (s *Store) DeleteOrganization(ctx context.Context, issuer, id string, at time.Time) (orgs.Organization, usersync.Outcome, error) {
	probe := orgs.Organization{Issuer: issuer, ID: id, Version: 1, UpdatedAt: at}
	if err := probe.Validate(); err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	if err := ctx.Err(); err != nil {
		return orgs.Organization{}, usersync.Stale, err
	}
	at = milli(at)
	s.mu.Lock()
	defer s.mu.Unlock()
	key := orgs.Key(issuer, id)
	r := s.org.orgs[key]
	switch {
	case r == nil:
		r = &orgs.Organization{Issuer: issuer, ID: id}
		s.org.orgs[key] = r
	case !r.DeletedAt.IsZero():
		return cloneOrg(*r), usersync.Stale, nil
	}
	*r = orgs.Organization{Issuer: r.Issuer, ID: r.ID, Slug: r.Slug, CreatedAt: r.CreatedAt, Version: r.Version, UpdatedAt: at, DeletedAt: at}
	s.changedOrg(usersync.Deleted, r)
	for _, m := range sortedRows(s.org.byOrg[key], func(m *orgs.Membership) string { return m.UserSubject }) {
		s.endMembership(m, at)
	}
	return cloneOrg(*r), usersync.Deleted, nil
}

// endMembership tombstones a live membership row, as its organization's or
// user's delete does. The caller holds the write lock.
func (s *Store) endMembership(m *orgs.Membership, at time.Time) {
	if !m.DeletedAt.IsZero() {
		return
	}
	*m = orgs.Membership{Issuer: m.Issuer, OrganizationID: m.OrganizationID, UserSubject: m.UserSubject, ID: m.ID,
		CreatedAt: m.CreatedAt, Version: m.Version, UpdatedAt: at, DeletedAt: at}
	s.changedMembership(usersync.Deleted, m)
}

// endMemberships ends the memberships of the user with the token
// identifier, as the user's delete does. The caller holds the write lock.
func (s *Store) endMemberships(tokenIdentifier string, at time.Time) {
	for _, m := range sortedRows(s.org.byUser[tokenIdentifier], func(m *orgs.Membership) string { return m.OrganizationID }) {
		s.endMembership(m, at)
	}
}

// sortedRows returns the rows of an index in the order of key, so that the
// feed gets a cascade's changes in an order that does not depend on map
// iteration.
func sortedRows(rows map[string]*orgs.Membership, key func(*orgs.Membership) string) []*orgs.Membership {
	out := make([]*orgs.Membership, 0, len(rows))
	for _, m := range rows {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *orgs.Membership) int { return strings.Compare(key(a), key(b)) })
	return out
}

// UpsertMembership implements orgs.Store.
func (s *Store) UpsertMembership(ctx context.Context, m orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	if err := m.Validate(); err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	if err := ctx.Err(); err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upsertMembership(&m)
}

// UpsertMemberships implements orgs.Store.
func (s *Store) UpsertMemberships(ctx context.Context, ms []orgs.Membership) ([]usersync.Outcome, error) {
	ms = slices.Clone(ms) // Validate rewrites what it checks: not the caller's
	for i := range ms {
		if err := ms[i].Validate(); err != nil {
			return nil, fmt.Errorf("membership %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	outcomes := make([]usersync.Outcome, len(ms))
	for i := range ms {
		_, outcomes[i], _ = s.upsertMembership(&ms[i]) // refused: Stale
	}
	return outcomes, nil
}

// later reports whether membership a was created after b: by CreatedAt,
// then by ID, so that every store picks the same one.
func later(a, b *orgs.Membership) bool {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c > 0
	}
	return a.ID > b.ID
}

// upsertMembership applies a valid write. The caller holds the write lock.
func (s *Store) upsertMembership(m *orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	m.CreatedAt, m.UpdatedAt = milli(m.CreatedAt), milli(m.UpdatedAt)
	key := memberKey{orgs.Key(m.Issuer, m.OrganizationID), orgs.Key(m.Issuer, m.UserSubject)}
	if o := s.org.orgs[key.org]; o != nil && !o.DeletedAt.IsZero() {
		return orgs.Membership{}, usersync.Stale, fmt.Errorf("%w: the organization was deleted", orgs.ErrDeleted)
	}
	if u := s.byToken[key.user]; u != nil && !u.user.DeletedAt.IsZero() {
		return orgs.Membership{}, usersync.Stale, fmt.Errorf("%w: the user was deleted", orgs.ErrDeleted)
	}
	r := s.org.members[key]
	var outcome usersync.Outcome
	created := m.CreatedAt
	switch {
	case r == nil:
		r = new(orgs.Membership)
		s.org.members[key] = r
		index(s.org.byOrg, key.org, m.UserSubject, r)
		index(s.org.byUser, key.user, m.OrganizationID, r)
		outcome = usersync.Created
	case r.ID == m.ID && !r.DeletedAt.IsZero():
		return cloneMembership(*r), usersync.Stale, orgs.ErrDeleted
	case r.ID == m.ID && m.Version <= r.Version:
		return cloneMembership(*r), usersync.Stale, nil
	case r.ID == m.ID:
		created, outcome = r.CreatedAt, usersync.Updated // kept from the first write
	case !later(m, r):
		return cloneMembership(*r), usersync.Stale, nil
	case !r.DeletedAt.IsZero():
		outcome = usersync.Created // a member who left and joined again
	default:
		outcome = usersync.Updated
	}
	*r = cloneMembership(*m)
	r.CreatedAt, r.DeletedAt = created, time.Time{}
	s.changedMembership(outcome, r)
	return cloneMembership(*r), outcome, nil
}

// index adds a row to an index of rows by two keys.
func index(ix map[string]map[string]*orgs.Membership, k1, k2 string, m *orgs.Membership) {
	rows := ix[k1]
	if rows == nil {
		rows = map[string]*orgs.Membership{}
		ix[k1] = rows
	}
	rows[k2] = m
}

// DeleteMembership implements orgs.Store.
func (s *Store) DeleteMembership(ctx context.Context, m orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	probe := orgs.Membership{Issuer: m.Issuer, OrganizationID: m.OrganizationID, UserSubject: m.UserSubject, ID: m.ID,
		CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, Version: 1}
	if err := probe.Validate(); err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	if err := ctx.Err(); err != nil {
		return orgs.Membership{}, usersync.Stale, err
	}
	m.CreatedAt, m.UpdatedAt, m.Version = milli(m.CreatedAt), milli(m.UpdatedAt), max(m.Version, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	key := memberKey{orgs.Key(m.Issuer, m.OrganizationID), orgs.Key(m.Issuer, m.UserSubject)}
	r := s.org.members[key]
	switch {
	case r == nil:
		r = &orgs.Membership{}
		s.org.members[key] = r
		index(s.org.byOrg, key.org, m.UserSubject, r)
		index(s.org.byUser, key.user, m.OrganizationID, r)
	case r.ID == m.ID && r.DeletedAt.IsZero():
		// this membership, live: its tombstone
		m.CreatedAt, m.Version = r.CreatedAt, r.Version
	case r.ID == m.ID || !later(&m, r):
		return cloneMembership(*r), usersync.Stale, nil // already gone, or a later membership holds the row
	case !r.DeletedAt.IsZero():
		// The tombstone of an earlier membership becomes m's, so that a
		// late write of m changes nothing; no change of the feed: it was
		// not live.
		*r = orgs.Membership{Issuer: m.Issuer, OrganizationID: m.OrganizationID, UserSubject: m.UserSubject, ID: m.ID,
			CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, DeletedAt: m.UpdatedAt, Version: m.Version}
		return cloneMembership(*r), usersync.Stale, nil
	}
	*r = orgs.Membership{Issuer: m.Issuer, OrganizationID: m.OrganizationID, UserSubject: m.UserSubject, ID: m.ID,
		CreatedAt: m.CreatedAt, Version: m.Version, UpdatedAt: m.UpdatedAt, DeletedAt: m.UpdatedAt}
	s.changedMembership(usersync.Deleted, r)
	return cloneMembership(*r), usersync.Deleted, nil
}

// Organization implements orgs.Store.
func (s *Store) Organization(ctx context.Context, issuer, id string) (orgs.Organization, error) {
	if err := ctx.Err(); err != nil {
		return orgs.Organization{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return liveOrg(s.org.orgs[orgs.Key(issuer, id)])
}

// liveOrg returns a copy of a live organization. The caller holds a lock.
func liveOrg(o *orgs.Organization) (orgs.Organization, error) {
	switch {
	case o == nil:
		return orgs.Organization{}, orgs.ErrNotFound
	case !o.DeletedAt.IsZero():
		return orgs.Organization{}, orgs.ErrDeleted
	}
	return cloneOrg(*o), nil
}

// checkPage checks a page's after and limit, as every store does.
func checkPage(after string, limit int) error {
	switch {
	case limit < 1:
		return fmt.Errorf("%w: a limit below 1", usersync.ErrInvalid)
	case !utf8.ValidString(after) || strings.IndexByte(after, 0) >= 0:
		return fmt.Errorf("%w: after is not an ID a write could store", usersync.ErrInvalid)
	}
	return nil
}

// Organizations implements orgs.Store. It scans every organization: fine
// for the tests and small apps memstore is for.
func (s *Store) Organizations(ctx context.Context, issuer, after string, limit int) ([]orgs.Organization, error) {
	if err := checkPage(after, limit); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	issuer = strings.TrimRight(issuer, "/") // as keys have it
	var out []orgs.Organization
	for _, o := range s.org.orgs {
		if o.Issuer == issuer && o.ID > after && o.DeletedAt.IsZero() {
			out = append(out, *o)
		}
	}
	slices.SortFunc(out, func(a, b orgs.Organization) int { return strings.Compare(a.ID, b.ID) })
	out = out[:min(limit, len(out))]
	for i := range out {
		out[i] = cloneOrg(out[i])
	}
	return out, nil
}

// Member implements orgs.Store.
func (s *Store) Member(ctx context.Context, issuer, orgID, userSubject string) (orgs.Member, error) {
	if err := ctx.Err(); err != nil {
		return orgs.Member{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	key := orgs.Key(issuer, orgID)
	o, err := liveOrg(s.org.orgs[key])
	if err != nil {
		return orgs.Member{}, err
	}
	m := s.org.members[memberKey{key, orgs.Key(issuer, userSubject)}]
	if m == nil || !m.DeletedAt.IsZero() {
		return orgs.Member{}, orgs.ErrNotMember
	}
	return orgs.Member{Organization: o, Membership: cloneMembership(*m)}, nil
}

// Memberships implements orgs.Store.
func (s *Store) Memberships(ctx context.Context, issuer, orgID, after string, limit int) ([]orgs.Membership, error) {
	if err := checkPage(after, limit); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []orgs.Membership
	for _, m := range sortedRows(s.org.byOrg[orgs.Key(issuer, orgID)], func(m *orgs.Membership) string { return m.UserSubject }) {
		if len(out) == limit {
			break
		}
		if m.UserSubject > after && m.DeletedAt.IsZero() {
			out = append(out, cloneMembership(*m))
		}
	}
	return out, nil
}

// UserMemberships implements orgs.Store.
func (s *Store) UserMemberships(ctx context.Context, issuer, userSubject, after string, limit int) ([]orgs.Member, error) {
	if err := checkPage(after, limit); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []orgs.Member
	for _, m := range sortedRows(s.org.byUser[orgs.Key(issuer, userSubject)], func(m *orgs.Membership) string { return m.OrganizationID }) {
		if len(out) == limit {
			break
		}
		o := s.org.orgs[orgs.Key(issuer, m.OrganizationID)]
		if m.OrganizationID > after && m.DeletedAt.IsZero() && o != nil && o.DeletedAt.IsZero() {
			out = append(out, orgs.Member{Organization: cloneOrg(*o), Membership: cloneMembership(*m)})
		}
	}
	return out, nil
}

// changedOrg and changedMembership append a change to the feed. The
// caller holds the write lock.
func (s *Store) changedOrg(o usersync.Outcome, r *orgs.Organization) {
	s.lastSeq++
	s.changes = append(s.changes, usersync.Change{Seq: s.lastSeq, Entity: usersync.EntityOrganization, Outcome: o,
		OrganizationID: r.ID, At: r.UpdatedAt})
}

func (s *Store) changedMembership(o usersync.Outcome, r *orgs.Membership) {
	s.lastSeq++
	s.changes = append(s.changes, usersync.Change{Seq: s.lastSeq, Entity: usersync.EntityMembership, Outcome: o,
		OrganizationID: r.OrganizationID, Subject: r.UserSubject, At: r.UpdatedAt})
}
