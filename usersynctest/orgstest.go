package usersynctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// The rules of orgs.Store, named Orgs/...: they run only on stores that
// implement it (and Orgs/Feed/... only on those with a change feed too).

const orgIssuer = "https://issuer.test"

// org returns a write of organization id at version v.
func (f *storeFixture) org(id string, v usersync.Version, name string) orgs.Organization {
	f.ids++
	return orgs.Organization{
		Issuer: orgIssuer, ID: id, Name: name, Slug: "slug-" + id, ImageURL: "https://img.test/" + id,
		Metadata:  json.RawMessage(`{"plan":"` + name + `"}`),
		CreatedAt: epoch, UpdatedAt: epoch.Add(time.Duration(f.ids) * time.Second), Version: v,
	}
}

// member returns a write of membership id of user sub in organization
// orgID at version v, created at created (seconds after the epoch).
func (f *storeFixture) member(orgID, sub, id string, created int, v usersync.Version, role string) orgs.Membership {
	f.ids++
	return orgs.Membership{
		Issuer: orgIssuer, OrganizationID: orgID, UserSubject: sub, ID: id, Role: role,
		Permissions: []string{"org:sys_memberships:read", "org:" + role + ":x"},
		Metadata:    json.RawMessage(`{"team":"` + role + `"}`),
		CreatedAt:   epoch.Add(time.Duration(created) * time.Second), UpdatedAt: epoch.Add(time.Duration(f.ids) * time.Second), Version: v,
	}
}

func (f *storeFixture) upsertOrg(o orgs.Organization, want usersync.Outcome) orgs.Organization {
	f.t.Helper()
	got, outcome, err := f.orgs.UpsertOrganization(bg, o)
	if err != nil || outcome != want {
		f.t.Fatalf("UpsertOrganization(%s v%d) = %v, %v; want %v", o.ID, o.Version, outcome, err, want)
	}
	return got
}

func (f *storeFixture) upsertMember(m orgs.Membership, want usersync.Outcome) orgs.Membership {
	f.t.Helper()
	got, outcome, err := f.orgs.UpsertMembership(bg, m)
	if err != nil || outcome != want {
		f.t.Fatalf("UpsertMembership(%s %s %s v%d) = %v, %v; want %v", m.OrganizationID, m.UserSubject, m.ID, m.Version, outcome, err, want)
	}
	return got
}

// refused checks that err wraps orgs.ErrDeleted, and so usersync's
// ErrDeleted and ErrNotFound.
func refused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, orgs.ErrDeleted) || !errors.Is(err, usersync.ErrDeleted) || !errors.Is(err, usersync.ErrNotFound) || !errors.Is(err, orgs.ErrNotFound) {
		t.Fatalf("%s: err = %v, want orgs.ErrDeleted (and usersync.ErrDeleted)", what, err)
	}
}

// role returns the role of user sub in orgID, "" if not a live member of a
// live organization.
func (f *storeFixture) role(orgID, sub string) string {
	f.t.Helper()
	m, err := f.orgs.Member(bg, orgIssuer, orgID, sub)
	switch {
	case err == nil:
		return m.Membership.Role
	case errors.Is(err, orgs.ErrNotMember), errors.Is(err, orgs.ErrNotFound):
		return ""
	}
	f.t.Fatalf("Member(%s, %s): %v", orgID, sub, err)
	return ""
}

func sameOrg(t *testing.T, what string, got, want orgs.Organization) {
	t.Helper()
	if got.Issuer != want.Issuer || got.ID != want.ID || got.Name != want.Name || got.Slug != want.Slug || got.ImageURL != want.ImageURL ||
		!jsonEqual(got.Metadata, want.Metadata) || got.Version != want.Version || !got.DeletedAt.IsZero() {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
	sameTime(t, what+" UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func sameMember(t *testing.T, what string, got, want orgs.Membership) {
	t.Helper()
	if got.Issuer != want.Issuer || got.OrganizationID != want.OrganizationID || got.UserSubject != want.UserSubject || got.ID != want.ID ||
		got.Role != want.Role || !slices.Equal(got.Permissions, want.Permissions) || !jsonEqual(got.Metadata, want.Metadata) ||
		got.Version != want.Version || !got.DeletedAt.IsZero() {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
	sameTime(t, what+" UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

// orgOrders returns every order of n items.
func orgOrders(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range orgOrders(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := slices.Insert(slices.Clone(p), i, n-1)
			out = append(out, q)
		}
	}
	return out
}

var orgCases = []storeCase{
	{"Orgs/UpsertOrganization creates, a newer version replaces, an older or equal one is stale", func(t *testing.T, f *storeFixture) {
		w := f.org("org_1", 10, "Acme")
		got := f.upsertOrg(w, usersync.Created)
		sameOrg(t, "created", got, w)
		sameTime(t, "CreatedAt", got.CreatedAt, w.CreatedAt)
		read, err := f.orgs.Organization(bg, orgIssuer, "org_1")
		if err != nil {
			t.Fatalf("Organization: %v", err)
		}
		sameOrg(t, "Organization", read, w)
		newer := f.org("org_1", 11, "Acme Inc")
		newer.CreatedAt = epoch.Add(time.Hour) // CreatedAt is the first write's
		got = f.upsertOrg(newer, usersync.Updated)
		sameOrg(t, "updated", got, newer)
		sameTime(t, "CreatedAt after an update", got.CreatedAt, w.CreatedAt)
		for _, v := range []usersync.Version{11, 10, 1} {
			got = f.upsertOrg(f.org("org_1", v, "old"), usersync.Stale)
			sameOrg(t, fmt.Sprintf("after a stale v%d", v), got, newer)
		}
		newer.Metadata = nil
		f.upsertOrg(func() orgs.Organization { o := f.org("org_1", 12, "Acme Inc"); o.Metadata = nil; return o }(), usersync.Updated)
		if read, _ := f.orgs.Organization(bg, orgIssuer, "org_1"); read.Metadata != nil {
			t.Fatalf("metadata removed by the provider stays: %s", read.Metadata)
		}
	}},
	{"Orgs/reordered organization deliveries converge on the newest", func(t *testing.T, f *storeFixture) {
		for k, order := range orgOrders(3) {
			id := fmt.Sprintf("org_%d", k)
			ws := []orgs.Organization{f.org(id, 1, "one"), f.org(id, 2, "two"), f.org(id, 3, "three")}
			for _, i := range order {
				if _, _, err := f.orgs.UpsertOrganization(bg, ws[i]); err != nil {
					t.Fatal(err)
				}
			}
			got, err := f.orgs.Organization(bg, orgIssuer, id)
			if err != nil || got.Name != "three" || got.Version != 3 {
				t.Fatalf("order %v: %+v, %v; want version 3", order, got, err)
			}
		}
	}},
	{"Orgs/a deleted organization is a final tombstone", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 5, "Acme"), usersync.Created)
		at := epoch.Add(time.Hour)
		tomb, outcome, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_1", at)
		if err != nil || outcome != usersync.Deleted {
			t.Fatalf("DeleteOrganization = %v, %v", outcome, err)
		}
		if tomb.ID != "org_1" || tomb.Slug != "slug-org_1" || tomb.Name != "" || tomb.Metadata != nil || tomb.ImageURL != "" {
			t.Fatalf("tombstone %+v: keeps the ID and slug, clears the rest", tomb)
		}
		sameTime(t, "DeletedAt", tomb.DeletedAt, at)
		sameTime(t, "CreatedAt", tomb.CreatedAt, epoch)
		_, err = f.orgs.Organization(bg, orgIssuer, "org_1")
		refused(t, "Organization of a tombstone", err)
		_, outcome, err = f.orgs.UpsertOrganization(bg, f.org("org_1", 99, "back"))
		refused(t, "a later write", err)
		if outcome != usersync.Stale {
			t.Fatalf("a write to a tombstone reported %v", outcome)
		}
		if _, outcome, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_1", at.Add(time.Hour)); err != nil || outcome != usersync.Stale {
			t.Fatalf("deleting again = %v, %v; want Stale", outcome, err)
		}
		// Deleted before it was ever seen: a late created changes nothing.
		if _, outcome, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_2", at); err != nil || outcome != usersync.Deleted {
			t.Fatalf("deleting an unseen organization = %v, %v; want Deleted", outcome, err)
		}
		_, _, err = f.orgs.UpsertOrganization(bg, f.org("org_2", 1, "late"))
		refused(t, "a created after its deleted", err)
		if list, err := f.orgs.Organizations(bg, orgIssuer, "", 10); err != nil || len(list) != 0 {
			t.Fatalf("Organizations lists tombstones: %+v, %v", list, err)
		}
	}},
	{"Orgs/UpsertMembership creates, a newer version replaces, an older or equal one is stale", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		w := f.member("org_1", "user_a", "orgmem_1", 5, 10, "org:member")
		got := f.upsertMember(w, usersync.Created)
		sameMember(t, "created", got, w)
		m, err := f.orgs.Member(bg, orgIssuer, "org_1", "user_a")
		if err != nil {
			t.Fatalf("Member: %v", err)
		}
		sameMember(t, "Member", m.Membership, w)
		if m.Organization.ID != "org_1" || m.Organization.Name != "Acme" {
			t.Fatalf("Member's organization = %+v", m.Organization)
		}
		newer := f.member("org_1", "user_a", "orgmem_1", 5, 11, "org:admin")
		newer.Permissions = nil
		got = f.upsertMember(newer, usersync.Updated)
		sameMember(t, "updated", got, newer)
		sameTime(t, "CreatedAt", got.CreatedAt, w.CreatedAt)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 5, 11, "org:member"), usersync.Stale)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 5, 9, "org:member"), usersync.Stale)
		if r := f.role("org_1", "user_a"); r != "org:admin" {
			t.Fatalf("role = %q after stale writes, want org:admin", r)
		}
	}},
	{"Orgs/Member tells a missing organization, a deleted one and a non-member apart", func(t *testing.T, f *storeFixture) {
		if _, err := f.orgs.Member(bg, orgIssuer, "org_none", "user_a"); !errors.Is(err, orgs.ErrNotFound) || errors.Is(err, orgs.ErrDeleted) || errors.Is(err, orgs.ErrNotMember) {
			t.Fatalf("Member of a missing organization: %v, want ErrNotFound", err)
		}
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member"), usersync.Created)
		if _, err := f.orgs.Member(bg, orgIssuer, "org_1", "user_b"); !errors.Is(err, orgs.ErrNotMember) {
			t.Fatalf("Member of a non-member: %v, want ErrNotMember", err)
		}
		if _, err := f.orgs.Member(bg, "https://other.test", "org_1", "user_a"); !errors.Is(err, orgs.ErrNotFound) {
			t.Fatalf("Member under another issuer: %v, want ErrNotFound", err)
		}
		for _, bad := range []string{"", "org_1\x00", "\xff", string(make([]byte, 600))} {
			if _, err := f.orgs.Member(bg, orgIssuer, bad, "user_a"); !errors.Is(err, orgs.ErrNotFound) {
				t.Fatalf("Member(%q): %v, want ErrNotFound", bad, err)
			}
			if _, err := f.orgs.Member(bg, orgIssuer, "org_1", bad); !errors.Is(err, orgs.ErrNotMember) {
				t.Fatalf("Member(user %q): %v, want ErrNotMember", bad, err)
			}
			if _, err := f.orgs.Organization(bg, orgIssuer, bad); !errors.Is(err, orgs.ErrNotFound) {
				t.Fatalf("Organization(%q): %v, want ErrNotFound", bad, err)
			}
		}
		if _, _, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_1", epoch); err != nil {
			t.Fatal(err)
		}
		_, err := f.orgs.Member(bg, orgIssuer, "org_1", "user_a")
		refused(t, "Member of a deleted organization", err)
	}},
	{"Orgs/a membership may arrive before its organization and its user", func(t *testing.T, f *storeFixture) {
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 3, "org:admin"), usersync.Created)
		if _, err := f.orgs.Member(bg, orgIssuer, "org_1", "user_a"); !errors.Is(err, orgs.ErrNotFound) || errors.Is(err, orgs.ErrNotMember) {
			t.Fatalf("Member before the organization: %v, want ErrNotFound", err)
		}
		if list, err := f.orgs.UserMemberships(bg, orgIssuer, "user_a", "", 10); err != nil || len(list) != 0 {
			t.Fatalf("UserMemberships lists a membership of an organization not stored: %+v, %v", list, err)
		}
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		if r := f.role("org_1", "user_a"); r != "org:admin" {
			t.Fatalf("role = %q once the organization arrived", r)
		}
		u := f.upsert(f.write("user_a", 1, usersync.AllFields, full("a")), usersync.Created)
		if r := f.role("org_1", u.Subject); r != "org:admin" {
			t.Fatalf("role = %q once the user arrived", r)
		}
	}},
	{"Orgs/a deleted membership is a final tombstone", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		w := f.member("org_1", "user_a", "orgmem_1", 1, 5, "org:member")
		f.upsertMember(w, usersync.Created)
		del := w
		del.UpdatedAt = epoch.Add(time.Hour)
		tomb, outcome, err := f.orgs.DeleteMembership(bg, del)
		if err != nil || outcome != usersync.Deleted {
			t.Fatalf("DeleteMembership = %v, %v", outcome, err)
		}
		if tomb.ID != "orgmem_1" || tomb.Role != "" || tomb.Permissions != nil || tomb.Metadata != nil {
			t.Fatalf("tombstone %+v: keeps the keys and ID, clears the rest", tomb)
		}
		sameTime(t, "DeletedAt", tomb.DeletedAt, del.UpdatedAt)
		if r := f.role("org_1", "user_a"); r != "" {
			t.Fatalf("a deleted member has role %q", r)
		}
		for _, v := range []usersync.Version{4, 5, 6, 100} {
			_, outcome, err := f.orgs.UpsertMembership(bg, f.member("org_1", "user_a", "orgmem_1", 1, v, "org:admin"))
			refused(t, fmt.Sprintf("a late write v%d", v), err)
			if outcome != usersync.Stale {
				t.Fatalf("a late write reported %v", outcome)
			}
		}
		if _, outcome, err := f.orgs.DeleteMembership(bg, del); err != nil || outcome != usersync.Stale {
			t.Fatalf("deleting again = %v, %v; want Stale", outcome, err)
		}
		// Deleted before it was seen.
		early := f.member("org_1", "user_b", "orgmem_2", 1, 5, "org:member")
		if _, outcome, err := f.orgs.DeleteMembership(bg, early); err != nil || outcome != usersync.Deleted {
			t.Fatalf("deleting an unseen membership = %v, %v; want Deleted", outcome, err)
		}
		_, _, err = f.orgs.UpsertMembership(bg, early)
		refused(t, "a created after its deleted", err)
		if list, err := f.orgs.Memberships(bg, orgIssuer, "org_1", "", 10); err != nil || len(list) != 0 {
			t.Fatalf("Memberships lists tombstones: %+v, %v", list, err)
		}
	}},
	{"Orgs/a member who leaves and joins again converges on the later membership in every order", func(t *testing.T, f *storeFixture) {
		type step struct {
			name string
			do   func(orgID string) error
		}
		for k, order := range orgOrders(4) {
			orgID := fmt.Sprintf("org_%d", k)
			f.upsertOrg(f.org(orgID, 1, "Acme"), usersync.Created)
			first := f.member(orgID, "user_a", "orgmem_a", 1, 1, "org:member")
			firstUpdated := f.member(orgID, "user_a", "orgmem_a", 1, 2, "org:member")
			second := f.member(orgID, "user_a", "orgmem_b", 10, 10, "org:admin")
			steps := []step{
				{"a.created", func(string) error { _, _, err := f.orgs.UpsertMembership(bg, first); return err }},
				{"a.updated", func(string) error { _, _, err := f.orgs.UpsertMembership(bg, firstUpdated); return err }},
				{"a.deleted", func(string) error { _, _, err := f.orgs.DeleteMembership(bg, firstUpdated); return err }},
				{"b.created", func(string) error { _, _, err := f.orgs.UpsertMembership(bg, second); return err }},
			}
			var names []string
			for _, i := range order {
				names = append(names, steps[i].name)
				if err := steps[i].do(orgID); err != nil && !errors.Is(err, orgs.ErrDeleted) {
					t.Fatalf("%v: %s: %v", names, steps[i].name, err)
				}
			}
			m, err := f.orgs.Member(bg, orgIssuer, orgID, "user_a")
			if err != nil || m.Membership.ID != "orgmem_b" || m.Membership.Role != "org:admin" {
				t.Fatalf("after %v: %+v, %v; want the live membership orgmem_b", names, m.Membership, err)
			}
		}
	}},
	{"Orgs/times are kept to the millisecond, and the re-join rule compares them so", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		base := epoch.Add(time.Hour)
		first := f.member("org_1", "user_a", "orgmem_b", 0, 1, "org:member")
		first.CreatedAt = base.Add(500 * time.Microsecond)
		second := f.member("org_1", "user_a", "orgmem_a", 0, 2, "org:admin")
		second.CreatedAt = base.Add(700 * time.Microsecond) // the same millisecond: the greater ID holds the row
		f.upsertMember(first, usersync.Created)
		got := f.upsertMember(second, usersync.Stale)
		if got.ID != "orgmem_b" || !got.CreatedAt.Equal(base) {
			t.Fatalf("row = %s created %v; want orgmem_b, created %v (to the millisecond)", got.ID, got.CreatedAt, base)
		}
		o := f.org("org_2", 1, "Beta")
		o.CreatedAt, o.UpdatedAt = base.Add(999*time.Microsecond), base.Add(time.Second+1500*time.Microsecond)
		stored := f.upsertOrg(o, usersync.Created)
		if !stored.CreatedAt.Equal(base) || !stored.UpdatedAt.Equal(base.Add(time.Second+time.Millisecond)) {
			t.Fatalf("organization times %v, %v: want them to the millisecond", stored.CreatedAt, stored.UpdatedAt)
		}
	}},
	{"Orgs/deleting a membership over an earlier one's tombstone makes it the later one's", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		old := f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member")
		f.upsertMember(old, usersync.Created)
		if _, _, err := f.orgs.DeleteMembership(bg, old); err != nil {
			t.Fatal(err)
		}
		later := f.member("org_1", "user_a", "orgmem_2", 10, 7, "org:admin")
		tomb, outcome, err := f.orgs.DeleteMembership(bg, later)
		if err != nil || outcome != usersync.Stale {
			t.Fatalf("DeleteMembership over an earlier tombstone = %v, %v; want Stale (it was not live)", outcome, err)
		}
		if tomb.ID != "orgmem_2" || tomb.Version != 7 || tomb.DeletedAt.IsZero() {
			t.Fatalf("tombstone %+v: want orgmem_2's, at its version", tomb)
		}
		sameTime(t, "CreatedAt", tomb.CreatedAt, later.CreatedAt)
		sameTime(t, "DeletedAt", tomb.DeletedAt, later.UpdatedAt)
		_, _, err = f.orgs.UpsertMembership(bg, later)
		refused(t, "a late write of the later membership", err)
		if list, err := f.orgs.Organizations(bg, orgIssuer+"/", "", 10); err != nil || len(list) != 1 {
			t.Fatalf("Organizations with a trailing slash on the issuer: %+v, %v", list, err)
		}
	}},
	{"Orgs/a user's delete ends memberships at its time, to the millisecond", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member"), usersync.Created)
		w := f.tombstone("user_a")
		w.At = epoch.Add(time.Hour + 1234567*time.Nanosecond)
		if _, _, err := f.s.Delete(bg, w); err != nil {
			t.Fatal(err)
		}
		if f.feed == nil {
			return
		}
		changes, err := f.feed.Changes(bg, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		last := changes[len(changes)-1]
		if last.Entity != usersync.EntityMembership || last.Outcome != usersync.Deleted || !last.At.Equal(w.At.Truncate(time.Millisecond)) {
			t.Fatalf("the ended membership's change %+v: want Deleted at %v", last, w.At.Truncate(time.Millisecond))
		}
	}},
	{"Orgs/pages after an ID no write could store fail with ErrInvalid", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		for _, bad := range []string{"org\x00", "\xff"} {
			if _, err := f.orgs.Organizations(bg, orgIssuer, bad, 10); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("Organizations after %q: %v, want ErrInvalid", bad, err)
			}
			if _, err := f.orgs.Memberships(bg, orgIssuer, "org_1", bad, 10); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("Memberships after %q: %v, want ErrInvalid", bad, err)
			}
			if _, err := f.orgs.UserMemberships(bg, orgIssuer, "user_a", bad, 10); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("UserMemberships after %q: %v, want ErrInvalid", bad, err)
			}
		}
		m := f.member("org_1", "user_a", "orgmem_1", 1, -5, "")
		tomb, _, err := f.orgs.DeleteMembership(bg, m)
		if err != nil || tomb.Version != 0 {
			t.Fatalf("DeleteMembership with a version below 0: %+v, %v; want a tombstone at version 0", tomb, err)
		}
	}},
	{"Orgs/batches leave the caller's writes as they were", func(t *testing.T, f *storeFixture) {
		o := f.org("org_1", 1, "Acme")
		o.Metadata = json.RawMessage(`{ "a" : "\ud800" }`) // normalised when stored
		m := f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member")
		m.Metadata = json.RawMessage(`{ "b" : 1 }`)
		os, ms := []orgs.Organization{o}, []orgs.Membership{m}
		if _, err := f.orgs.UpsertOrganizations(bg, os); err != nil {
			t.Fatal(err)
		}
		if _, err := f.orgs.UpsertMemberships(bg, ms); err != nil {
			t.Fatal(err)
		}
		if string(os[0].Metadata) != `{ "a" : "\ud800" }` || string(ms[0].Metadata) != `{ "b" : 1 }` {
			t.Fatalf("the batch changed the caller's writes: %s, %s", os[0].Metadata, ms[0].Metadata)
		}
	}},
	{"Orgs/deleting an organization ends its memberships, and refuses later ones", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		f.upsertOrg(f.org("org_2", 1, "Other"), usersync.Created)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:admin"), usersync.Created)
		f.upsertMember(f.member("org_1", "user_b", "orgmem_2", 1, 1, "org:member"), usersync.Created)
		f.upsertMember(f.member("org_2", "user_a", "orgmem_3", 1, 1, "org:member"), usersync.Created)
		if _, _, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_1", epoch.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if list, err := f.orgs.Memberships(bg, orgIssuer, "org_1", "", 10); err != nil || len(list) != 0 {
			t.Fatalf("memberships of a deleted organization: %+v, %v", list, err)
		}
		if list, err := f.orgs.UserMemberships(bg, orgIssuer, "user_a", "", 10); err != nil || len(list) != 1 || list[0].Organization.ID != "org_2" {
			t.Fatalf("user_a's memberships: %+v, %v; want org_2 only", list, err)
		}
		_, _, err := f.orgs.UpsertMembership(bg, f.member("org_1", "user_c", "orgmem_4", 2, 5, "org:member"))
		refused(t, "a membership of a deleted organization", err)
		_, _, err = f.orgs.UpsertMembership(bg, f.member("org_1", "user_a", "orgmem_1", 1, 9, "org:admin"))
		refused(t, "an update of an ended membership", err)
		if r := f.role("org_2", "user_a"); r != "org:member" {
			t.Fatalf("the other organization's membership: role %q", r)
		}
	}},
	{"Orgs/deleting a user ends their memberships, and refuses later ones", func(t *testing.T, f *storeFixture) {
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		f.upsertOrg(f.org("org_2", 1, "Other"), usersync.Created)
		f.upsert(f.write("user_a", 1, usersync.AllFields, full("a")), usersync.Created)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:admin"), usersync.Created)
		f.upsertMember(f.member("org_2", "user_a", "orgmem_2", 1, 1, "org:member"), usersync.Created)
		f.upsertMember(f.member("org_1", "user_b", "orgmem_3", 1, 1, "org:member"), usersync.Created)
		f.delete("user_a", usersync.Deleted)
		if list, err := f.orgs.UserMemberships(bg, orgIssuer, "user_a", "", 10); err != nil || len(list) != 0 {
			t.Fatalf("a deleted user's memberships: %+v, %v", list, err)
		}
		if r := f.role("org_1", "user_a"); r != "" {
			t.Fatalf("a deleted user has role %q", r)
		}
		_, _, err := f.orgs.UpsertMembership(bg, f.member("org_1", "user_a", "orgmem_1", 1, 9, "org:admin"))
		refused(t, "an update of a deleted user's membership", err)
		_, _, err = f.orgs.UpsertMembership(bg, f.member("org_3", "user_a", "orgmem_9", 1, 9, "org:admin"))
		refused(t, "a new membership of a deleted user", err)
		if r := f.role("org_1", "user_b"); r != "org:member" {
			t.Fatalf("another member: role %q", r)
		}
		// A user deleted before anything was stored of them.
		f.delete("user_z", usersync.Deleted)
		_, _, err = f.orgs.UpsertMembership(bg, f.member("org_1", "user_z", "orgmem_z", 1, 1, "org:member"))
		refused(t, "a membership of a user deleted unseen", err)
	}},
	{"Orgs/concurrent first writes store one row", func(t *testing.T, f *storeFixture) {
		const n = 8
		var wg sync.WaitGroup
		orgOutcomes := make([]usersync.Outcome, n)
		memberOutcomes := make([]usersync.Outcome, n)
		errs := make([]error, 2*n)
		ows := make([]orgs.Organization, n)
		mws := make([]orgs.Membership, n)
		for i := range n {
			ows[i] = f.org("org_1", usersync.Version(i+1), fmt.Sprint("name", i))
			mws[i] = f.member("org_1", "user_a", "orgmem_1", 1, usersync.Version(i+1), fmt.Sprint("org:role", i))
		}
		for i := range n {
			wg.Go(func() { _, orgOutcomes[i], errs[i] = f.orgs.UpsertOrganization(bg, ows[i]) })
			wg.Go(func() { _, memberOutcomes[i], errs[n+i] = f.orgs.UpsertMembership(bg, mws[i]) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for what, outcomes := range map[string][]usersync.Outcome{"organization": orgOutcomes, "membership": memberOutcomes} {
			if c := count(outcomes, usersync.Created); c != 1 {
				t.Fatalf("%s: %d writes reported Created (%v), want 1", what, c, outcomes)
			}
		}
		o, err := f.orgs.Organization(bg, orgIssuer, "org_1")
		if err != nil || o.Version != n {
			t.Fatalf("organization after concurrent writes: %+v, %v; want version %d", o, err, n)
		}
		if list, err := f.orgs.Memberships(bg, orgIssuer, "org_1", "", 10); err != nil || len(list) != 1 || list[0].Version != n {
			t.Fatalf("memberships after concurrent writes: %+v, %v; want one at version %d", list, err, n)
		}
	}},
	{"Orgs/keys compare byte for byte", func(t *testing.T, f *storeFixture) {
		ids := []string{"org_a", "org_A", "org_a ", "org_\u00e9", "org_e\u0301", "org_ß", "org_ss"}
		for _, id := range ids {
			f.upsertOrg(f.org(id, 1, id), usersync.Created)
			f.upsertMember(f.member(id, "user_"+id, "orgmem_"+id, 1, 1, id), usersync.Created)
			if id != "org_a" {
				f.upsertMember(f.member("org_a", "user_"+id, "orgmem_x"+id, 1, 1, id), usersync.Created)
			}
		}
		for _, id := range ids {
			o, err := f.orgs.Organization(bg, orgIssuer, id)
			if err != nil || o.Name != id {
				t.Fatalf("Organization(%q) = %+v, %v", id, o, err)
			}
			if r := f.role(id, "user_"+id); r != id {
				t.Fatalf("role of user_%s in %q = %q", id, id, r)
			}
		}
		list, err := f.orgs.Organizations(bg, orgIssuer, "", 100)
		if err != nil || len(list) != len(ids) {
			t.Fatalf("Organizations: %d, %v; want %d", len(list), err, len(ids))
		}
		if !slices.IsSortedFunc(list, func(a, b orgs.Organization) int { return compareBytes(a.ID, b.ID) }) {
			t.Fatalf("Organizations not in byte order: %v", orgIDs(list))
		}
		ms, err := f.orgs.Memberships(bg, orgIssuer, "org_a", "", 100)
		if err != nil || len(ms) != len(ids) {
			t.Fatalf("Memberships of org_a: %d, %v; want %d", len(ms), err, len(ids))
		}
		if !slices.IsSortedFunc(ms, func(a, b orgs.Membership) int { return compareBytes(a.UserSubject, b.UserSubject) }) {
			t.Fatalf("Memberships not in byte order")
		}
	}},
	{"Orgs/lists page live rows in byte order", func(t *testing.T, f *storeFixture) {
		for i := range 7 {
			id := fmt.Sprintf("org_%02d", i)
			f.upsertOrg(f.org(id, 1, id), usersync.Created)
			f.upsertMember(f.member("org_00", fmt.Sprintf("user_%02d", i), fmt.Sprint("orgmem_", i), 1, 1, "org:member"), usersync.Created)
			if i > 0 {
				f.upsertMember(f.member(id, "user_00", fmt.Sprint("orgmem_u", i), 1, 1, "org:member"), usersync.Created)
			}
		}
		f.upsertOrg(orgs.Organization{Issuer: "https://other.test", ID: "org_03", Name: "other", UpdatedAt: epoch, Version: 1}, usersync.Created)
		if _, _, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_02", epoch); err != nil {
			t.Fatal(err)
		}
		gone := f.member("org_00", "user_04", "orgmem_4", 1, 1, "org:member")
		if _, _, err := f.orgs.DeleteMembership(bg, gone); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for after := ""; ; {
			page, err := f.orgs.Organizations(bg, orgIssuer, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			ids = append(ids, orgIDs(page)...)
			after = page[len(page)-1].ID
		}
		if want := []string{"org_00", "org_01", "org_03", "org_04", "org_05", "org_06"}; !slices.Equal(ids, want) {
			t.Fatalf("Organizations paged: %v, want %v", ids, want)
		}
		var subs []string
		for after := ""; ; {
			page, err := f.orgs.Memberships(bg, orgIssuer, "org_00", after, 3)
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
		if want := []string{"user_00", "user_01", "user_02", "user_03", "user_05", "user_06"}; !slices.Equal(subs, want) {
			t.Fatalf("Memberships paged: %v, want %v", subs, want)
		}
		var mine []string
		for after := ""; ; {
			page, err := f.orgs.UserMemberships(bg, orgIssuer, "user_00", after, 4)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, m := range page {
				if m.Organization.ID != m.Membership.OrganizationID || m.Organization.Name != m.Organization.ID {
					t.Fatalf("UserMemberships pairs %+v", m)
				}
				mine = append(mine, m.Organization.ID)
			}
			after = page[len(page)-1].Organization.ID
		}
		if want := []string{"org_00", "org_01", "org_03", "org_04", "org_05", "org_06"}; !slices.Equal(mine, want) {
			t.Fatalf("UserMemberships paged: %v, want %v", mine, want)
		}
		for name, call := range map[string]func() error{
			"Organizations":   func() error { _, err := f.orgs.Organizations(bg, orgIssuer, "", 0); return err },
			"Memberships":     func() error { _, err := f.orgs.Memberships(bg, orgIssuer, "org_00", "", 0); return err },
			"UserMemberships": func() error { _, err := f.orgs.UserMemberships(bg, orgIssuer, "user_00", "", -1); return err },
		} {
			if err := call(); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("%s with a limit below 1: %v, want ErrInvalid", name, err)
			}
		}
	}},
	{"Orgs/batches apply in order, report tombstones stale, and refuse a malformed write whole", func(t *testing.T, f *storeFixture) {
		if _, _, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_dead", epoch); err != nil {
			t.Fatal(err)
		}
		outcomes, err := f.orgs.UpsertOrganizations(bg, []orgs.Organization{
			f.org("org_1", 1, "one"), f.org("org_1", 2, "two"), f.org("org_1", 2, "again"), f.org("org_dead", 1, "x"), f.org("org_2", 1, "b"),
		})
		want := []usersync.Outcome{usersync.Created, usersync.Updated, usersync.Stale, usersync.Stale, usersync.Created}
		if err != nil || !slices.Equal(outcomes, want) {
			t.Fatalf("UpsertOrganizations = %v, %v; want %v", outcomes, err, want)
		}
		if o, _ := f.orgs.Organization(bg, orgIssuer, "org_1"); o.Name != "two" {
			t.Fatalf("after the batch: %+v", o)
		}
		outcomes, err = f.orgs.UpsertMemberships(bg, []orgs.Membership{
			f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member"), f.member("org_1", "user_a", "orgmem_1", 1, 3, "org:admin"),
			f.member("org_dead", "user_a", "orgmem_2", 1, 1, "org:member"), f.member("org_2", "user_b", "orgmem_3", 1, 1, "org:member"),
			f.member("org_1", "user_a", "orgmem_1", 1, 2, "org:member"),
		})
		want = []usersync.Outcome{usersync.Created, usersync.Updated, usersync.Stale, usersync.Created, usersync.Stale}
		if err != nil || !slices.Equal(outcomes, want) {
			t.Fatalf("UpsertMemberships = %v, %v; want %v", outcomes, err, want)
		}
		if r := f.role("org_1", "user_a"); r != "org:admin" {
			t.Fatalf("after the batch: role %q", r)
		}
		bad := f.org("org_3", 0, "no version")
		if _, err := f.orgs.UpsertOrganizations(bg, []orgs.Organization{f.org("org_4", 1, "fine"), bad}); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("a batch with a malformed write: %v, want ErrInvalid", err)
		}
		if _, err := f.orgs.Organization(bg, orgIssuer, "org_4"); !errors.Is(err, orgs.ErrNotFound) {
			t.Fatalf("a refused batch wrote: %v", err)
		}
		badM := f.member("org_1", "", "orgmem_9", 1, 1, "org:member")
		if _, err := f.orgs.UpsertMemberships(bg, []orgs.Membership{f.member("org_1", "user_c", "orgmem_8", 1, 1, "org:member"), badM}); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("a batch with a malformed membership: %v, want ErrInvalid", err)
		}
		if r := f.role("org_1", "user_c"); r != "" {
			t.Fatalf("a refused batch wrote a membership: %q", r)
		}
		if out, err := f.orgs.UpsertOrganizations(bg, nil); err != nil || len(out) != 0 {
			t.Fatalf("an empty batch: %v, %v", out, err)
		}
	}},
	{"Orgs/malformed writes fail with ErrInvalid and store nothing", func(t *testing.T, f *storeFixture) {
		orgCases := map[string]func(*orgs.Organization){
			"no issuer":          func(o *orgs.Organization) { o.Issuer = "" },
			"issuer with a /":    func(o *orgs.Organization) { o.Issuer += "/" },
			"no ID":              func(o *orgs.Organization) { o.ID = "" },
			"ID too long":        func(o *orgs.Organization) { o.ID = fmt.Sprintf("%0129d", 0) },
			"ID with a NUL":      func(o *orgs.Organization) { o.ID = "org\x00" },
			"version 0":          func(o *orgs.Organization) { o.Version = 0 },
			"version past 9999":  func(o *orgs.Organization) { o.Version = 253402300800000 },
			"no UpdatedAt":       func(o *orgs.Organization) { o.UpdatedAt = time.Time{} },
			"invalid UTF-8 name": func(o *orgs.Organization) { o.Name = "\xff" },
			"metadata not JSON":  func(o *orgs.Organization) { o.Metadata = json.RawMessage(`{`) },
			"name over 16 KiB":   func(o *orgs.Organization) { o.Name = string(make([]byte, 16<<10+1)) },
		}
		for name, spoil := range orgCases {
			o := f.org("org_bad", 1, "x")
			spoil(&o)
			if _, _, err := f.orgs.UpsertOrganization(bg, o); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("organization with %s: %v, want ErrInvalid", name, err)
			}
		}
		memberCases := map[string]func(*orgs.Membership){
			"no subject":              func(m *orgs.Membership) { m.UserSubject = "" },
			"no membership ID":        func(m *orgs.Membership) { m.ID = "" },
			"no organization":         func(m *orgs.Membership) { m.OrganizationID = "" },
			"subject too long":        func(m *orgs.Membership) { m.UserSubject = fmt.Sprintf("%0256d", 0) },
			"role too long":           func(m *orgs.Membership) { m.Role = fmt.Sprintf("%0256d", 0) },
			"an empty permission":     func(m *orgs.Membership) { m.Permissions = []string{""} },
			"too many permissions":    func(m *orgs.Membership) { m.Permissions = make([]string, 257) },
			"a permission with a NUL": func(m *orgs.Membership) { m.Permissions = []string{"a\x00"} },
			"permissions over 16 KiB": func(m *orgs.Membership) {
				m.Permissions = nil
				for i := range 70 {
					m.Permissions = append(m.Permissions, fmt.Sprintf("%0250d", i))
				}
			},
			"version 0":             func(m *orgs.Membership) { m.Version = 0 },
			"CreatedAt before 1970": func(m *orgs.Membership) { m.CreatedAt = time.Unix(-1, 0) },
		}
		for name, spoil := range memberCases {
			m := f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member")
			spoil(&m)
			if _, _, err := f.orgs.UpsertMembership(bg, m); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("membership with %s: %v, want ErrInvalid", name, err)
			}
		}
		if _, _, err := f.orgs.DeleteOrganization(bg, orgIssuer, "", epoch); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("DeleteOrganization of an empty ID: %v", err)
		}
		if list, err := f.orgs.Organizations(bg, orgIssuer, "", 10); err != nil || len(list) != 0 {
			t.Fatalf("malformed writes stored %+v, %v", list, err)
		}
		if _, err := f.orgs.Member(bg, orgIssuer, "org_1", "user_a"); !errors.Is(err, orgs.ErrNotFound) {
			t.Fatalf("malformed writes stored a membership: %v", err)
		}
	}},
	{"Orgs/returned values are copies", func(t *testing.T, f *storeFixture) {
		o := f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		m := f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member"), usersync.Created)
		o.Metadata[0], m.Metadata[0], m.Permissions[0] = 'X', 'X', "changed"
		got, err := f.orgs.Member(bg, orgIssuer, "org_1", "user_a")
		if err != nil {
			t.Fatal(err)
		}
		if got.Organization.Metadata[0] != '{' || got.Membership.Metadata[0] != '{' || got.Membership.Permissions[0] == "changed" {
			t.Fatalf("changing a returned value changed the store: %+v", got)
		}
		got.Membership.Permissions[0] = "changed again"
		if again, _ := f.orgs.Member(bg, orgIssuer, "org_1", "user_a"); again.Membership.Permissions[0] == "changed again" {
			t.Fatal("Member shares its permissions with the store")
		}
	}},
	{"Orgs/Feed/organization and membership changes reach the feed in order, cascades included", func(t *testing.T, f *storeFixture) {
		if f.feed == nil {
			t.Skipf("%T does not implement feed.Store: it keeps no change feed", f.s)
		}
		f.upsertOrg(f.org("org_1", 1, "Acme"), usersync.Created)
		f.upsertOrg(f.org("org_1", 1, "stale"), usersync.Stale)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 1, "org:member"), usersync.Created)
		f.upsertMember(f.member("org_1", "user_a", "orgmem_1", 1, 2, "org:admin"), usersync.Updated)
		f.upsertMember(f.member("org_1", "user_b", "orgmem_2", 1, 1, "org:member"), usersync.Created)
		f.upsertOrg(f.org("org_1", 2, "Acme Inc"), usersync.Updated)
		f.upsert(f.write("user_b", 1, usersync.AllFields, full("b")), usersync.Created)
		f.delete("user_b", usersync.Deleted)
		if _, _, err := f.orgs.DeleteOrganization(bg, orgIssuer, "org_1", epoch.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		changes, err := f.feed.Changes(bg, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		type c struct {
			e       usersync.Entity
			o       usersync.Outcome
			org, by string
		}
		want := []c{
			{usersync.EntityOrganization, usersync.Created, "org_1", ""},
			{usersync.EntityMembership, usersync.Created, "org_1", "user_a"},
			{usersync.EntityMembership, usersync.Updated, "org_1", "user_a"},
			{usersync.EntityMembership, usersync.Created, "org_1", "user_b"},
			{usersync.EntityOrganization, usersync.Updated, "org_1", ""},
			{usersync.EntityUser, usersync.Created, "", ""},
			{usersync.EntityUser, usersync.Deleted, "", ""},
			{usersync.EntityMembership, usersync.Deleted, "org_1", "user_b"}, // the user's delete ends it
			{usersync.EntityOrganization, usersync.Deleted, "org_1", ""},
			{usersync.EntityMembership, usersync.Deleted, "org_1", "user_a"}, // the organization's delete ends it
		}
		var got []c
		for _, ch := range changes {
			got = append(got, c{ch.Entity, ch.Outcome, ch.OrganizationID, ch.Subject})
			if (ch.Entity == usersync.EntityUser) != (ch.UserID != "") {
				t.Fatalf("change %+v: UserID is set for users only", ch)
			}
		}
		// The user's delete and its membership's end are one transaction:
		// either order of the two within it is fine, as is the
		// organization's delete and its membership's end.
		norm := func(cs []c) []c {
			cs = slices.Clone(cs)
			for i := 0; i+1 < len(cs); i++ {
				if cs[i].e == usersync.EntityMembership && cs[i].o == usersync.Deleted && cs[i+1].o == usersync.Deleted && cs[i+1].e != usersync.EntityMembership {
					cs[i], cs[i+1] = cs[i+1], cs[i]
				}
			}
			return cs
		}
		if !slices.Equal(norm(got), norm(want)) {
			t.Fatalf("feed:\n got  %v\n want %v", got, want)
		}
		for i := 1; i < len(changes); i++ {
			if changes[i].Seq <= changes[i-1].Seq {
				t.Fatalf("Seq not increasing: %d then %d", changes[i-1].Seq, changes[i].Seq)
			}
		}
	}},
}

func count[T comparable](s []T, v T) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func compareBytes(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func orgIDs(list []orgs.Organization) []string {
	var out []string
	for _, o := range list {
		out = append(out, o.ID)
	}
	return out
}
