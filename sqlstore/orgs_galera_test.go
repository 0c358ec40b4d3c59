package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// The first write of one organization and one membership on every node of
// a Galera cluster at once stores one row each: the certification of all
// but one fails, and their transactions run again and find its row.
func TestGaleraOrganizationFirstWrites(t *testing.T) {
	stores := galeraStores(t)
	firstWritesRace(t, stores, 5)
}

// roundRobin keeps organizations too, so that TestGaleraConformance checks
// the rules of orgs.Store whichever node answers.
var _ orgs.Store = (*roundRobin)(nil)

func (r *roundRobin) UpsertOrganization(ctx context.Context, o orgs.Organization) (orgs.Organization, usersync.Outcome, error) {
	return r.node().UpsertOrganization(ctx, o)
}

func (r *roundRobin) UpsertOrganizations(ctx context.Context, os []orgs.Organization) ([]usersync.Outcome, error) {
	return r.node().UpsertOrganizations(ctx, os)
}

func (r *roundRobin) DeleteOrganization(ctx context.Context, issuer, id string, at time.Time) (orgs.Organization, usersync.Outcome, error) {
	return r.node().DeleteOrganization(ctx, issuer, id, at)
}

func (r *roundRobin) UpsertMembership(ctx context.Context, m orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	return r.node().UpsertMembership(ctx, m)
}

func (r *roundRobin) UpsertMemberships(ctx context.Context, ms []orgs.Membership) ([]usersync.Outcome, error) {
	return r.node().UpsertMemberships(ctx, ms)
}

func (r *roundRobin) DeleteMembership(ctx context.Context, m orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	return r.node().DeleteMembership(ctx, m)
}

func (r *roundRobin) Organization(ctx context.Context, issuer, id string) (orgs.Organization, error) {
	return r.node().Organization(ctx, issuer, id)
}

func (r *roundRobin) Organizations(ctx context.Context, issuer, after string, limit int) ([]orgs.Organization, error) {
	return r.node().Organizations(ctx, issuer, after, limit)
}

func (r *roundRobin) Member(ctx context.Context, issuer, orgID, userSubject string) (orgs.Member, error) {
	return r.node().Member(ctx, issuer, orgID, userSubject)
}

func (r *roundRobin) Memberships(ctx context.Context, issuer, orgID, after string, limit int) ([]orgs.Membership, error) {
	return r.node().Memberships(ctx, issuer, orgID, after, limit)
}

func (r *roundRobin) UserMemberships(ctx context.Context, issuer, userSubject, after string, limit int) ([]orgs.Member, error) {
	return r.node().UserMemberships(ctx, issuer, userSubject, after, limit)
}
