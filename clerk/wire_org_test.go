package clerk_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
)

// Wire makes the organizations' parts that its store and config allow.
func TestWireOrganizations(t *testing.T) {
	in := newInstance(t)
	mine := newOrgSyncer(t, memstore.New())
	for _, tc := range []struct {
		name                               string
		store                              usersync.Store
		cfg                                func(*clerk.SetupConfig)
		wantOrgs, wantList, wantReconciler bool
	}{
		{"a store of organizations, with a secret key", memstore.New(), nil, true, true, true},
		{"without a secret key", memstore.New(), func(c *clerk.SetupConfig) { c.SecretKey = "" }, true, false, false},
		{"a store of users only", usersOnly{memstore.New()}, nil, false, true, false},
		{"an orgs Syncer of the app's", usersOnly{memstore.New()}, func(c *clerk.SetupConfig) { c.Organizations = mine }, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, err := clerk.Wire(context.Background(), tc.store, in.config(tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			if (app.Orgs != nil) != tc.wantOrgs || (app.Organizations != nil) != tc.wantList || (app.OrgReconciler != nil) != tc.wantReconciler {
				t.Fatalf("Orgs %v, Organizations %v, OrgReconciler %v", app.Orgs != nil, app.Organizations != nil, app.OrgReconciler != nil)
			}
			if tc.cfg != nil && app.Orgs != nil && app.Orgs != mine && tc.name == "an orgs Syncer of the app's" {
				t.Fatal("Wire replaced the app's orgs Syncer")
			}
		})
	}
}

// Through the App: webhooks write organizations, OnChange sees them with
// their entity, RequireMember admits members, and the organizations'
// reconciler imports what the webhooks missed.
func TestAppOrganizations(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t)
	store := memstore.New()
	var mu sync.Mutex
	var changes []usersync.Change
	app, _ := in.wire(t, store, in.config(func(c *clerk.SetupConfig) {
		c.OnChange = func(_ context.Context, ch usersync.Change) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, ch)
		}
	}))
	for _, name := range []string{"organizationMembership.created", "organization.updated"} {
		if w := serve(app.Webhook, in.sender.Request("/hook", event(t, name))); w.Code != 200 {
			t.Fatalf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	mu.Lock()
	var entities []usersync.Entity
	for _, ch := range changes {
		entities = append(entities, ch.Entity)
	}
	mu.Unlock()
	if len(entities) != 3 || entities[0] != usersync.EntityOrganization || entities[1] != usersync.EntityMembership || entities[2] != usersync.EntityOrganization {
		t.Fatalf("OnChange saw %v", entities)
	}
	if _, err := app.Orgs.Member(ctx, usersync.User{Issuer: in.iss.URL, Subject: memberSub}, acmeID, "admin"); err != nil {
		t.Fatalf("Member: %v", err)
	}

	// Missed webhooks: a new organization with its member, and the
	// removal of acme's member. The reconcile heals them.
	fake := in.api.Fake
	t0 := time.Now().Add(-time.Hour)
	if err := fake.PutOrganization(clerkfake.Organization{ID: acmeID, Name: "Acme Incorporated", UpdatedAt: time.UnixMilli(1654013466465)},
		clerkfake.Organization{ID: "org_new", Name: "New", UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := fake.PutMembership(clerkfake.Membership{OrganizationID: "org_new", UserID: "user_bob", Role: "org:admin", UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.OrgReconciler.Run(ctx); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if m, err := store.Member(ctx, in.iss.URL, "org_new", "user_bob"); err != nil || m.Membership.Role != "org:admin" {
		t.Fatalf("after the reconcile: %+v, %v", m, err)
	}
	if _, err := store.Member(ctx, in.iss.URL, acmeID, memberSub); !errors.Is(err, orgs.ErrNotMember) {
		t.Fatalf("acme's removed member after the reconcile: %v", err)
	}
}
