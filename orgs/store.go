package orgs

import (
	"context"
	"time"

	"github.com/usersync/usersync"
)

// Store keeps organizations and memberships beside a usersync.Store's
// users. memstore and sqlstore implement it; usersynctest.TestStore checks
// its rules for any store that does. Its methods follow usersync.Store's
// rules: each takes a context first, honours its cancellation and is
// atomic on its own, concurrent calls from any number of processes behave
// as if run one at a time, returned values are copies, keys compare byte
// for byte, and errors wrap this package's sentinels (or usersync's
// ErrInvalid) where one applies.
//
// A store that implements Store also ends memberships when a user goes:
// its usersync.Store.Delete tombstones the user's live memberships in the
// same transaction, and every membership it ends is a Deleted change of
// the feed.
type Store interface {
	// UpsertOrganization applies o (checked with Organization.Validate) to
	// the organization Key(o.Issuer, o.ID). If there is none, it stores o
	// and reports Created. If there is one and o.Version is newer than its
	// version, it replaces every field but CreatedAt (kept from the first
	// write) and reports Updated; else it changes nothing and reports
	// Stale. On a tombstone it changes nothing and fails with ErrDeleted.
	// It returns the row as stored after the write.
	UpsertOrganization(ctx context.Context, o Organization) (Organization, usersync.Outcome, error)

	// UpsertOrganizations applies os as UpsertOrganization applies each,
	// in order, atomically (all or, if it fails, none) and in as few round
	// trips as it can: for reconciles. Every write must pass Validate, or
	// the batch fails with ErrInvalid and changes nothing. A write aimed at
	// a tombstone reports Stale. It returns each write's outcome.
	UpsertOrganizations(ctx context.Context, os []Organization) ([]usersync.Outcome, error)

	// DeleteOrganization turns the organization Key(issuer, id) into a
	// tombstone, even one never seen, so that no later write brings it
	// back: Issuer, ID, Slug and CreatedAt stay, the rest is cleared,
	// UpdatedAt and DeletedAt become at, and Deleted is reported. In the
	// same transaction it tombstones every live membership of the
	// organization (each a Deleted change of the feed). Deleting a
	// tombstone again changes nothing and reports Stale. It returns the
	// tombstone either way.
	DeleteOrganization(ctx context.Context, issuer, id string, at time.Time) (Organization, usersync.Outcome, error)

	// UpsertMembership applies m (checked with Membership.Validate) to the
	// membership of user m.UserSubject in organization m.OrganizationID of
	// m.Issuer. If the organization, or the user (the usersync.Store user
	// Key(m.Issuer, m.UserSubject)), is a tombstone, it changes nothing and
	// fails with ErrDeleted; neither needs to exist yet.
	//
	// If there is no row, it stores m and reports Created. If the row holds
	// the membership m.ID: on a tombstone it changes nothing and fails with
	// ErrDeleted; else, if m.Version is newer than the row's, it replaces
	// every field but CreatedAt and reports Updated, or else reports Stale.
	// If the row holds another membership ID (the user left and joined
	// again), the one with the later CreatedAt (then the greater ID, byte
	// by byte) holds the row: m replaces the row if it is the later one,
	// whatever the versions, reporting Created if the row was a tombstone
	// and Updated if not; else it changes nothing and reports Stale.
	// It returns the row as stored after the write.
	UpsertMembership(ctx context.Context, m Membership) (Membership, usersync.Outcome, error)

	// UpsertMemberships applies ms as UpsertMembership applies each, in
	// order, atomically and in as few round trips as it can, as
	// UpsertOrganizations does; a write refused with ErrDeleted reports
	// Stale.
	UpsertMemberships(ctx context.Context, ms []Membership) ([]usersync.Outcome, error)

	// DeleteMembership turns the membership m names into a tombstone: of
	// m, only Issuer, OrganizationID, UserSubject, ID, CreatedAt, UpdatedAt
	// (the time of the delete) and Version (a tombstone that becomes m's
	// keeps it; below 0 counts as 0) are used. If the row holds m.ID
	// and is live, the row becomes its tombstone: the key, ID and
	// CreatedAt stay, Role, Permissions and Metadata are cleared, UpdatedAt
	// and DeletedAt become m.UpdatedAt, and Deleted is reported. If there
	// is no row, or the row holds an earlier membership (by CreatedAt, then
	// ID), the row becomes m's tombstone, so that a late write of m
	// changes nothing, and Deleted is reported if the row was live (or
	// absent). Otherwise (already a tombstone of m, or the row holds a
	// later membership) it changes nothing and reports Stale. It returns
	// the row after the call.
	DeleteMembership(ctx context.Context, m Membership) (Membership, usersync.Outcome, error)

	// Organization returns the live organization Key(issuer, id), failing
	// with ErrDeleted for a tombstone and ErrNotFound otherwise.
	Organization(ctx context.Context, issuer, id string) (Organization, error)

	// Organizations returns up to limit live organizations of issuer with
	// an ID greater than after, by ID (byte order); after == "" starts at
	// the beginning. A limit below 1 fails with ErrInvalid.
	Organizations(ctx context.Context, issuer, after string, limit int) ([]Organization, error)

	// Member returns, in one read, the live organization Key(issuer,
	// orgID) and the live membership in it of userSubject: the check of
	// the request path. It fails with ErrDeleted if the organization is a
	// tombstone, ErrNotFound if it is not stored, and ErrNotMember if the
	// user has no live membership of it.
	Member(ctx context.Context, issuer, orgID, userSubject string) (Member, error)

	// Memberships returns up to limit live memberships of the organization
	// Key(issuer, orgID) with a UserSubject greater than after, by
	// UserSubject (byte order). A limit below 1 fails with ErrInvalid.
	Memberships(ctx context.Context, issuer, orgID, after string, limit int) ([]Membership, error)

	// UserMemberships returns up to limit of the user's live memberships
	// of live organizations, each with its organization, with an
	// organization ID greater than after, by organization ID (byte order).
	// A limit below 1 fails with ErrInvalid.
	UserMemberships(ctx context.Context, issuer, userSubject, after string, limit int) ([]Member, error)
}
