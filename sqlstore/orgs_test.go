package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sqlstore"
)

// The rules of orgs.Store, on every backend, until usersynctest.TestStore
// holds them for every store.

const orgIssuer = "https://issuer.test"

// t0 is a time of the tests, at a whole millisecond (what every dialect
// stores).
var t0 = time.UnixMilli(1_750_000_000_000)

func org(id string, v usersync.Version) orgs.Organization {
	return orgs.Organization{Issuer: orgIssuer, ID: id, Name: fmt.Sprintf("Org %s v%d", id, v), Slug: "slug-" + id,
		ImageURL: "https://img.test/" + id, Metadata: json.RawMessage(`{"plan":"pro"}`),
		CreatedAt: t0, UpdatedAt: t0.Add(time.Duration(v) * time.Second), Version: v}
}

func membership(orgID, sub, id string, created time.Time, v usersync.Version) orgs.Membership {
	return orgs.Membership{Issuer: orgIssuer, OrganizationID: orgID, UserSubject: sub, ID: id, Role: "org:member",
		Permissions: []string{"org:read", "org:write"}, Metadata: json.RawMessage(`{"team":"a"}`),
		CreatedAt: created, UpdatedAt: t0.Add(time.Duration(v) * time.Second), Version: v}
}

func userWrite(sub string, v usersync.Version) usersync.Write {
	return usersync.Write{ID: "id-" + sub, Issuer: orgIssuer, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(orgIssuer, sub),
		Version: v, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "User " + sub}, At: t0}
}

func must[T any](t *testing.T, what string, v T, outcome usersync.Outcome, err error, want usersync.Outcome) T {
	t.Helper()
	if err != nil || outcome != want {
		t.Fatalf("%s: %v, %v; want %v", what, outcome, err, want)
	}
	return v
}

func TestOrganizationRules(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s := b.NewStore(t)
			got, out, err := s.UpsertOrganization(ctx, org("org_1", 10))
			must(t, "create", got, out, err, usersync.Created)
			if got.Name != "Org org_1 v10" || !got.CreatedAt.Equal(t0) || got.Version != 10 || !sameJSON(got.Metadata, `{"plan":"pro"}`) {
				t.Fatalf("created: %+v", got)
			}
			_, out, err = s.UpsertOrganization(ctx, org("org_1", 10))
			must(t, "the same version", 0, out, err, usersync.Stale)
			_, out, err = s.UpsertOrganization(ctx, org("org_1", 9))
			must(t, "an older version", 0, out, err, usersync.Stale)
			newer := org("org_1", 11)
			newer.CreatedAt = t0.Add(time.Hour)
			newer.Metadata = nil
			got, out, err = s.UpsertOrganization(ctx, newer)
			must(t, "a newer version", got, out, err, usersync.Updated)
			if got.Name != "Org org_1 v11" || !got.CreatedAt.Equal(t0) || got.Metadata != nil {
				t.Fatalf("updated: %+v", got)
			}
			read, err := s.Organization(ctx, orgIssuer, "org_1")
			if err != nil || read.Name != got.Name || !read.CreatedAt.Equal(t0) || !read.UpdatedAt.Equal(got.UpdatedAt) || read.Version != 11 || read.Issuer != orgIssuer || read.ID != "org_1" {
				t.Fatalf("read: %+v, %v", read, err)
			}
			// Keys compare byte for byte.
			if _, err := s.Organization(ctx, orgIssuer, "org_1 "); !errors.Is(err, orgs.ErrNotFound) {
				t.Fatalf(`"org_1 ": %v`, err)
			}
			if _, err := s.Organization(ctx, orgIssuer, "ORG_1"); !errors.Is(err, orgs.ErrNotFound) {
				t.Fatalf(`"ORG_1": %v`, err)
			}
			for _, bad := range []string{"", "\xff", "a\x00b", string(make([]byte, 300))} {
				if _, err := s.Organization(ctx, orgIssuer, bad); !errors.Is(err, orgs.ErrNotFound) || !errors.Is(err, usersync.ErrNotFound) {
					t.Fatalf("Organization(%q): %v", bad, err)
				}
				if _, err := s.Member(ctx, orgIssuer, bad, "user_1"); !errors.Is(err, orgs.ErrNotFound) {
					t.Fatalf("Member(%q): %v", bad, err)
				}
				if _, err := s.Member(ctx, orgIssuer, "org_1", bad); !errors.Is(err, orgs.ErrNotMember) {
					t.Fatalf("Member(org_1, %q): %v", bad, err)
				}
			}
			// Deleted is deleted.
			at := t0.Add(time.Hour)
			tomb, out, err := s.DeleteOrganization(ctx, orgIssuer, "org_1", at)
			must(t, "delete", tomb, out, err, usersync.Deleted)
			if tomb.Slug != "slug-org_1" || tomb.Name != "" || tomb.ImageURL != "" || !tomb.DeletedAt.Equal(at) || !tomb.UpdatedAt.Equal(at) || !tomb.CreatedAt.Equal(t0) {
				t.Fatalf("tombstone: %+v", tomb)
			}
			tomb2, out, err := s.DeleteOrganization(ctx, orgIssuer, "org_1", at.Add(time.Minute))
			must(t, "delete again", tomb2, out, err, usersync.Stale)
			if !tomb2.DeletedAt.Equal(at) {
				t.Fatalf("tombstone after a second delete: %+v", tomb2)
			}
			if _, _, err := s.UpsertOrganization(ctx, org("org_1", 99)); !errors.Is(err, orgs.ErrDeleted) || !errors.Is(err, usersync.ErrDeleted) {
				t.Fatalf("upsert of a tombstone: %v", err)
			}
			if _, err := s.Organization(ctx, orgIssuer, "org_1"); !errors.Is(err, orgs.ErrDeleted) || !errors.Is(err, orgs.ErrNotFound) {
				t.Fatalf("read of a tombstone: %v", err)
			}
			if _, err := s.Member(ctx, orgIssuer, "org_1", "user_1"); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("Member of a tombstone: %v", err)
			}
			// A delete of an organization never seen leaves its tombstone.
			_, out, err = s.DeleteOrganization(ctx, orgIssuer, "org_never", at)
			must(t, "delete of one never seen", 0, out, err, usersync.Deleted)
			if _, _, err := s.UpsertOrganization(ctx, org("org_never", 1)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("created after its delete: %v", err)
			}
			outcomes, err := s.UpsertOrganizations(ctx, []orgs.Organization{org("org_never", 2), org("org_b", 1)})
			if err != nil || !slices.Equal(outcomes, []usersync.Outcome{usersync.Stale, usersync.Created}) {
				t.Fatalf("batch with a tombstone: %v, %v", outcomes, err)
			}
			// Listing: live ones, by ID in byte order, after a cursor.
			for _, id := range []string{"org_a", "org_B", "org_c", "org_a "} {
				if _, _, err := s.UpsertOrganization(ctx, org(id, 1)); err != nil {
					t.Fatal(err)
				}
			}
			other := org("org_x", 1)
			other.Issuer = orgIssuer + "/other"
			if _, _, err := s.UpsertOrganization(ctx, other); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for after := ""; ; {
				page, err := s.Organizations(ctx, orgIssuer, after, 2)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				for _, o := range page {
					ids = append(ids, o.ID)
				}
				after = page[len(page)-1].ID
			}
			if want := []string{"org_B", "org_a", "org_a ", "org_b", "org_c"}; !slices.Equal(ids, want) {
				t.Fatalf("Organizations: %q, want %q", ids, want)
			}
			if _, err := s.Organizations(ctx, orgIssuer, "", 0); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("limit 0: %v", err)
			}
			if _, _, err := s.UpsertOrganization(ctx, orgs.Organization{Issuer: orgIssuer, ID: "x", UpdatedAt: t0}); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("no version: %v", err)
			}
		})
	}
}

func TestMembershipRules(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s := b.NewStore(t)
			// Before its organization and its user.
			got, out, err := s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_1", t0, 5))
			must(t, "create", got, out, err, usersync.Created)
			if got.Role != "org:member" || !slices.Equal(got.Permissions, []string{"org:read", "org:write"}) || !got.CreatedAt.Equal(t0) {
				t.Fatalf("created: %+v", got)
			}
			if _, err := s.Member(ctx, orgIssuer, "org_1", "user_1"); !errors.Is(err, orgs.ErrNotFound) || errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("Member before the organization: %v", err)
			}
			if _, _, err := s.UpsertOrganization(ctx, org("org_1", 1)); err != nil {
				t.Fatal(err)
			}
			m, err := s.Member(ctx, orgIssuer, "org_1", "user_1")
			if err != nil || m.Membership.ID != "orgmem_1" || m.Membership.Role != "org:member" || m.Organization.Name != "Org org_1 v1" ||
				m.Membership.Version != 5 || m.Organization.Version != 1 || m.Membership.UserSubject != "user_1" || m.Organization.ID != "org_1" ||
				!slices.Equal(m.Membership.Permissions, []string{"org:read", "org:write"}) || !sameJSON(m.Membership.Metadata, `{"team":"a"}`) {
				t.Fatalf("Member: %+v, %v", m, err)
			}
			if _, err := s.Member(ctx, orgIssuer, "org_1", "user_2"); !errors.Is(err, orgs.ErrNotMember) {
				t.Fatalf("Member of another user: %v", err)
			}
			if _, err := s.Member(ctx, orgIssuer, "org_1", "user_1 "); !errors.Is(err, orgs.ErrNotMember) {
				t.Fatalf(`Member "user_1 ": %v`, err)
			}
			// Versions.
			_, out, err = s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_1", t0, 5))
			must(t, "the same version", 0, out, err, usersync.Stale)
			admin := membership("org_1", "user_1", "orgmem_1", t0.Add(time.Minute), 6)
			admin.Role, admin.Permissions = "org:admin", nil
			got, out, err = s.UpsertMembership(ctx, admin)
			must(t, "newer", got, out, err, usersync.Updated)
			if got.Role != "org:admin" || got.Permissions != nil || !got.CreatedAt.Equal(t0) {
				t.Fatalf("updated: %+v", got)
			}
			// The user leaves and joins again: the later membership holds
			// the row, whatever the versions.
			rejoin := membership("org_1", "user_1", "orgmem_2", t0.Add(time.Hour), 1)
			got, out, err = s.UpsertMembership(ctx, rejoin)
			must(t, "a later membership", got, out, err, usersync.Updated)
			if got.ID != "orgmem_2" || !got.CreatedAt.Equal(t0.Add(time.Hour)) || got.Role != "org:member" {
				t.Fatalf("rejoined: %+v", got)
			}
			_, out, err = s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_1", t0, 100))
			must(t, "the earlier one's late event", 0, out, err, usersync.Stale)
			_, out, err = s.DeleteMembership(ctx, orgs.Membership{Issuer: orgIssuer, OrganizationID: "org_1", UserSubject: "user_1", ID: "orgmem_1", CreatedAt: t0, UpdatedAt: t0})
			must(t, "the earlier one's late delete", 0, out, err, usersync.Stale)
			// Delete, then a late write of the same membership.
			at := t0.Add(2 * time.Hour)
			tomb, out, err := s.DeleteMembership(ctx, orgs.Membership{Issuer: orgIssuer, OrganizationID: "org_1", UserSubject: "user_1", ID: "orgmem_2", CreatedAt: t0.Add(time.Hour), UpdatedAt: at})
			must(t, "delete", tomb, out, err, usersync.Deleted)
			if tomb.ID != "orgmem_2" || tomb.Role != "" || tomb.Permissions != nil || tomb.Metadata != nil || !tomb.DeletedAt.Equal(at) || !tomb.CreatedAt.Equal(t0.Add(time.Hour)) {
				t.Fatalf("tombstone: %+v", tomb)
			}
			if _, err := s.Member(ctx, orgIssuer, "org_1", "user_1"); !errors.Is(err, orgs.ErrNotMember) {
				t.Fatalf("Member after the delete: %v", err)
			}
			if _, _, err := s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_2", t0.Add(time.Hour), 50)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("a late write of the deleted membership: %v", err)
			}
			_, out, err = s.DeleteMembership(ctx, tomb)
			must(t, "delete again", 0, out, err, usersync.Stale)
			// A new membership revives the row: Created.
			got, out, err = s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_3", t0.Add(3*time.Hour), 1))
			must(t, "join again after the delete", got, out, err, usersync.Created)
			if _, err := s.Member(ctx, orgIssuer, "org_1", "user_1"); err != nil {
				t.Fatal(err)
			}
			// A delete of a membership never seen, then its late creation.
			_, out, err = s.DeleteMembership(ctx, orgs.Membership{Issuer: orgIssuer, OrganizationID: "org_1", UserSubject: "user_2", ID: "orgmem_9", CreatedAt: t0, UpdatedAt: at})
			must(t, "delete of one never seen", 0, out, err, usersync.Deleted)
			if _, _, err := s.UpsertMembership(ctx, membership("org_1", "user_2", "orgmem_9", t0, 1)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("created after its delete: %v", err)
			}
			// A delete of a later membership over an earlier tombstone: the
			// row becomes its tombstone, without a change.
			_, out, err = s.DeleteMembership(ctx, orgs.Membership{Issuer: orgIssuer, OrganizationID: "org_1", UserSubject: "user_2", ID: "orgmem_10", CreatedAt: t0.Add(time.Minute), UpdatedAt: at})
			must(t, "a later delete over a tombstone", 0, out, err, usersync.Stale)
			if _, _, err := s.UpsertMembership(ctx, membership("org_1", "user_2", "orgmem_10", t0.Add(time.Minute), 1)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("created after its delete over a tombstone: %v", err)
			}
			// Listing.
			for _, sub := range []string{"user_b", "user_A", "user_a", "user_a "} {
				if _, _, err := s.UpsertMembership(ctx, membership("org_1", sub, "orgmem_"+sub, t0, 1)); err != nil {
					t.Fatal(err)
				}
			}
			var subs []string
			for after := ""; ; {
				page, err := s.Memberships(ctx, orgIssuer, "org_1", after, 2)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				for _, m := range page {
					subs = append(subs, m.UserSubject)
				}
				after = page[len(page)-1].UserSubject
			}
			if want := []string{"user_1", "user_A", "user_a", "user_a ", "user_b"}; !slices.Equal(subs, want) {
				t.Fatalf("Memberships: %q, want %q", subs, want)
			}
			for _, id := range []string{"org_3", "org_2"} {
				if _, _, err := s.UpsertOrganization(ctx, org(id, 1)); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.UpsertMembership(ctx, membership(id, "user_a", "orgmem_"+id, t0, 1)); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := s.UpsertMembership(ctx, membership("org_unknown", "user_a", "orgmem_u", t0, 1)); err != nil {
				t.Fatal(err)
			}
			var orgIDs []string
			for after := ""; ; {
				page, err := s.UserMemberships(ctx, orgIssuer, "user_a", after, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				if page[0].Membership.UserSubject != "user_a" || page[0].Organization.Name == "" {
					t.Fatalf("UserMemberships: %+v", page[0])
				}
				orgIDs = append(orgIDs, page[0].Organization.ID)
				after = page[0].Organization.ID
			}
			if want := []string{"org_1", "org_2", "org_3"}; !slices.Equal(orgIDs, want) {
				t.Fatalf("UserMemberships: %q, want %q", orgIDs, want)
			}
			// Deleting an organization ends its memberships; a membership
			// write for a deleted organization changes nothing.
			if _, _, err := s.DeleteOrganization(ctx, orgIssuer, "org_1", at); err != nil {
				t.Fatal(err)
			}
			if page, err := s.Memberships(ctx, orgIssuer, "org_1", "", 10); err != nil || len(page) != 0 {
				t.Fatalf("memberships of a deleted organization: %v, %v", page, err)
			}
			if _, _, err := s.UpsertMembership(ctx, membership("org_1", "user_new", "orgmem_new", t0, 1)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("membership of a deleted organization: %v", err)
			}
			// And a user's delete, theirs.
			if _, _, err := s.Delete(ctx, userWrite("user_a", 1)); err != nil {
				t.Fatal(err)
			}
			if page, err := s.UserMemberships(ctx, orgIssuer, "user_a", "", 10); err != nil || len(page) != 0 {
				t.Fatalf("memberships of a deleted user: %v, %v", page, err)
			}
			if _, err := s.Member(ctx, orgIssuer, "org_2", "user_a"); !errors.Is(err, orgs.ErrNotMember) {
				t.Fatalf("Member of a deleted user: %v", err)
			}
			if _, _, err := s.UpsertMembership(ctx, membership("org_2", "user_a", "orgmem_later", t0.Add(time.Hour), 9)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("membership of a deleted user: %v", err)
			}
			outcomes, err := s.UpsertMemberships(ctx, []orgs.Membership{
				membership("org_2", "user_a", "orgmem_later", t0.Add(time.Hour), 9),
				membership("org_1", "user_x", "orgmem_x", t0, 1),
				membership("org_2", "user_x", "orgmem_x2", t0, 1),
			})
			if err != nil || !slices.Equal(outcomes, []usersync.Outcome{usersync.Stale, usersync.Stale, usersync.Created}) {
				t.Fatalf("batch with deleted users and organizations: %v, %v", outcomes, err)
			}
		})
	}
}

// sameJSON reports whether got holds the JSON value of want (PostgreSQL's
// JSONB spaces it out).
func sameJSON(got json.RawMessage, want string) bool {
	var a, b any
	return json.Unmarshal(got, &a) == nil && json.Unmarshal([]byte(want), &b) == nil && fmt.Sprint(a) == fmt.Sprint(b)
}

var _ = sqlstore.SQLite
