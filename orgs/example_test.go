package orgs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
)

// The organization and its membership come from the provider's webhooks
// (clerk) or a reconcile; the request path asks the store.
func Example() {
	ctx := context.Background()
	store := memstore.New() // or sqlstore: both keep users and organizations
	users, _ := usersync.New(usersync.Config{Store: store})
	members, _ := orgs.New(orgs.Config{Store: store})

	const iss = "https://clerk.example.com"
	members.UpsertOrganization(ctx, orgs.Organization{Issuer: iss, ID: "org_1", Name: "Acme", Version: 1})
	members.UpsertMembership(ctx, orgs.Membership{Issuer: iss, OrganizationID: "org_1", UserSubject: "user_ada", ID: "orgmem_1", Role: "org:admin", Version: 1})
	ada, _, _ := users.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "user_ada", Version: 1})

	m, err := members.Member(ctx, ada, "org_1", "admin")
	fmt.Println(m.Organization.Name, m.Membership.Role, err)

	// Removed: refused at once, whatever the token still says.
	members.DeleteMembership(ctx, m.Membership)
	_, err = members.Member(ctx, ada, "org_1")
	fmt.Println(errors.Is(err, orgs.ErrNotMember))

	// Output:
	// Acme org:admin <nil>
	// true
}

// An organization's routes sit behind RequireUser and RequireMember; the
// handler finds the organization and the membership in its context.
func ExampleSyncer_RequireMember() {
	var users *usersync.Syncer // with an Extractor (jwtverify)
	var members *orgs.Syncer
	mux := http.NewServeMux()
	orgID := func(r *http.Request) string { return r.PathValue("orgId") }
	messages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := orgs.MemberFromContext(r.Context())
		fmt.Fprintf(w, "the messages of %s, for a %s", m.Organization.Name, m.Membership.Role)
	})
	if users != nil && members != nil {
		mux.Handle("GET /orgs/{orgId}/messages", users.RequireUser(members.RequireMember(orgID)(messages)))
		mux.Handle("DELETE /orgs/{orgId}", users.RequireUser(members.RequireMember(orgID, "admin")(messages)))
	}
}
