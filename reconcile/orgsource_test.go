package reconcile_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// orgDirectory is an in-memory reconcile.OrganizationSource: a provider's
// organizations and their memberships, each list oldest first (in the
// order put), with hooks that change the lists between pages.
type orgDirectory struct {
	issuer string

	mu      sync.Mutex
	orgs    []orgs.Organization
	members map[string][]orgs.Membership // by organization ID
	hidden  map[string]bool              // left out of the lists, found by lookups
	// before, if set, is called before each page the directory serves
	// (without its lock held): of organizations (orgID "") or of an
	// organization's memberships. An error it returns fails the page.
	before   func(n int, orgID string, offset int) error
	requests int // pages served, and lookups
}

func newOrgDirectory(issuer string) *orgDirectory {
	return &orgDirectory{issuer: issuer, members: map[string][]orgs.Membership{}, hidden: map[string]bool{}}
}

func (d *orgDirectory) Issuer() string { return d.issuer }

// hook calls d.before, if set, for a page.
func (d *orgDirectory) hook(orgID string, offset int) error {
	d.mu.Lock()
	d.requests++
	n, before := d.requests, d.before
	d.mu.Unlock()
	if before != nil {
		return before(n, orgID, offset)
	}
	return nil
}

func (d *orgDirectory) Organizations(_ context.Context, offset, limit int) ([]orgs.Organization, error) {
	if err := d.hook("", offset); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var listed []orgs.Organization
	for _, o := range d.orgs {
		if !d.hidden[o.ID] {
			listed = append(listed, o)
		}
	}
	return slices.Clone(listed[min(offset, len(listed)):min(offset+limit, len(listed))]), nil
}

func (d *orgDirectory) Memberships(_ context.Context, orgID string, offset, limit int) ([]orgs.Membership, error) {
	if err := d.hook(orgID, offset); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.find(orgID); !ok {
		return nil, fmt.Errorf("the organization %s: %w", orgID, orgs.ErrNotFound)
	}
	var listed []orgs.Membership
	for _, m := range d.members[orgID] {
		if !d.hidden[m.ID] {
			listed = append(listed, m)
		}
	}
	return slices.Clone(listed[min(offset, len(listed)):min(offset+limit, len(listed))]), nil
}

func (d *orgDirectory) LookupOrganization(_ context.Context, id string) (*orgs.Organization, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests++
	if i, ok := d.find(id); ok {
		o := d.orgs[i]
		return &o, nil
	}
	return nil, nil
}

func (d *orgDirectory) LookupMembership(_ context.Context, orgID, userSubject string) (*orgs.Membership, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests++
	for _, m := range d.members[orgID] {
		if m.UserSubject == userSubject {
			return &m, nil
		}
	}
	return nil, nil
}

func (d *orgDirectory) find(id string) (int, bool) {
	for i, o := range d.orgs {
		if o.ID == id {
			return i, true
		}
	}
	return 0, false
}

// put adds organizations, or replaces those of the same ID in place.
func (d *orgDirectory) put(os ...orgs.Organization) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range os {
		if i, ok := d.find(o.ID); ok {
			d.orgs[i] = o
		} else {
			d.orgs = append(d.orgs, o)
		}
	}
}

// remove deletes organizations and their memberships.
func (d *orgDirectory) remove(ids ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		if i, ok := d.find(id); ok {
			d.orgs = slices.Delete(d.orgs, i, i+1)
		}
		delete(d.members, id)
	}
}

// putMembers adds memberships, or replaces those of the same user in
// place.
func (d *orgDirectory) putMembers(ms ...orgs.Membership) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range ms {
		list := d.members[m.OrganizationID]
		if i := slices.IndexFunc(list, func(x orgs.Membership) bool { return x.UserSubject == m.UserSubject }); i >= 0 {
			list[i] = m
		} else {
			d.members[m.OrganizationID] = append(list, m)
		}
	}
}

// removeMember deletes the membership of user in org.
func (d *orgDirectory) removeMember(orgID, userSubject string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members[orgID] = slices.DeleteFunc(d.members[orgID], func(m orgs.Membership) bool { return m.UserSubject == userSubject })
}

// hide leaves the organization or membership (by its ID) out of the lists,
// as a list that moved under the sweep would, while lookups find it.
func (d *orgDirectory) hide(id string, hidden bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hidden[id] = hidden
}

func (d *orgDirectory) setBefore(f func(n int, orgID string, offset int) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.before, d.requests = f, 0
}

func (d *orgDirectory) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests
}

// orgID is the ID of the i-th organization of the fixtures.
func orgID(i int) string { return fmt.Sprintf("org_%05d", i) }

// org is the i-th organization, at revision rev, as the provider lists it
// (UpdatedAt zero, for the Syncer's clock).
func org(i, rev int) orgs.Organization {
	created := t0.Add(time.Duration(i) * time.Second)
	return orgs.Organization{
		Issuer: issuer, ID: orgID(i), Name: fmt.Sprintf("Org %d rev %d", i, rev), Slug: fmt.Sprintf("org-%d", i),
		CreatedAt: created, Version: usersync.Version(created.Add(time.Duration(rev) * time.Minute).UnixMilli()),
	}
}

// member is the membership of user j in organization i, at revision rev.
func member(i, j, rev int) orgs.Membership {
	created := t0.Add(time.Duration(i)*time.Second + time.Duration(j)*time.Millisecond)
	return orgs.Membership{
		Issuer: issuer, OrganizationID: orgID(i), UserSubject: fmt.Sprintf("user_%05d", j), ID: fmt.Sprintf("orgmem_%05d_%05d", i, j),
		Role: []string{"org:member", "org:admin"}[rev%2], CreatedAt: created,
		Version: usersync.Version(created.Add(time.Duration(rev) * time.Minute).UnixMilli()),
	}
}

// fill puts organizations from to to, each with perOrg(i) members, at
// revision rev.
func (d *orgDirectory) fill(from, to int, perOrg func(i int) int, rev int) {
	for i := from; i < to; i++ {
		d.put(org(i, rev))
		for j := range perOrg(i) {
			d.putMembers(member(i, j, rev))
		}
	}
}
