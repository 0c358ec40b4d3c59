package orgs_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
)

// BenchmarkMember is the membership check of the request path over
// memstore (the target: 2 µs), among 1,000 organizations of 20
// members each, beside the user lookup RequireUser does before it.
func BenchmarkMember(b *testing.B) {
	ctx := context.Background()
	s := memstore.New()
	og, err := orgs.New(orgs.Config{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	const iss = "https://i.test"
	var os []orgs.Organization
	var ms []orgs.Membership
	for i := range 1000 {
		id := fmt.Sprintf("org_%04d", i)
		os = append(os, orgs.Organization{Issuer: iss, ID: id, Name: id, Version: 1})
		for j := range 20 {
			ms = append(ms, orgs.Membership{Issuer: iss, OrganizationID: id, UserSubject: fmt.Sprintf("user_%04d", (i+j*50)%1000), ID: fmt.Sprintf("orgmem_%d_%d", i, j),
				Role: "org:member", Permissions: []string{"org:sys_profile:read"}, Version: 1})
		}
	}
	if _, err := og.UpsertOrganizations(ctx, os); err != nil {
		b.Fatal(err)
	}
	if _, err := og.UpsertMemberships(ctx, ms); err != nil {
		b.Fatal(err)
	}
	syncer, _ := usersync.New(usersync.Config{Store: s})
	u, _, err := syncer.Upsert(ctx, usersync.Write{Issuer: iss, Subject: ms[500].UserSubject, Version: 1})
	if err != nil {
		b.Fatal(err)
	}
	orgID := ms[500].OrganizationID
	b.Run("Member", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := og.Member(ctx, u, orgID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Member/role", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := og.Member(ctx, u, orgID, "admin", "member"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetByTokenIdentifier", func(b *testing.B) { // the floor: RequireUser's read
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetByTokenIdentifier(ctx, u.TokenIdentifier); err != nil {
				b.Fatal(err)
			}
		}
	})
}
