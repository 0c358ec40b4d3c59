package feed_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
)

// Handle's consumers get users' changes only, so handlers written before
// the feed carried organizations keep working; HandleAll's get every
// entity. Both pass the others' changes: their positions reach the end.
func TestHandleGetsUsersAndHandleAllEveryEntity(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	syncer, err := usersync.New(usersync.Config{Store: s, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	og, err := orgs.New(orgs.Config{Store: s, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_700_000_000_000)
	if _, _, err := og.UpsertOrganization(ctx, orgs.Organization{Issuer: issuer, ID: "org_1", Name: "Acme", Version: 1, CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := syncer.Upsert(ctx, usersync.Write{Issuer: issuer, Subject: "u1", Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := og.UpsertMembership(ctx, orgs.Membership{Issuer: issuer, OrganizationID: "org_1", UserSubject: "u1", ID: "orgmem_1", Role: "org:admin", Version: 1, CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := syncer.Delete(ctx, issuer, "u1"); err != nil { // ends the membership too
		t.Fatal(err)
	}

	var mu sync.Mutex
	got := map[string][]usersync.Entity{}
	record := func(name string) feed.Handler {
		return func(_ context.Context, c usersync.Change) error {
			mu.Lock()
			defer mu.Unlock()
			got[name] = append(got[name], c.Entity)
			return nil
		}
	}
	r := newRunner(t, feed.Config{Store: s})
	if err := r.Handle("users", record("users")); err != nil {
		t.Fatal(err)
	}
	if err := r.HandleAll("all", record("all")); err != nil {
		t.Fatal(err)
	}
	if err := r.HandleAll("users", record("users")); err == nil {
		t.Fatal("HandleAll took a name Handle registered")
	}
	stop := start(r)
	defer stop()
	for _, name := range []string{"users", "all"} {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := feed.WaitCaughtUp(wctx, s, name)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	u, o, m := usersync.EntityUser, usersync.EntityOrganization, usersync.EntityMembership
	if want := []usersync.Entity{u, u}; !slices.Equal(got["users"], want) {
		t.Fatalf("Handle's consumer got %v, want %v", got["users"], want)
	}
	if want := []usersync.Entity{o, u, m, u, m}; !slices.Equal(got["all"], want) {
		t.Fatalf("HandleAll's consumer got %v, want %v", got["all"], want)
	}
}
