package sqlstore_test

import (
	"context"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// previousVersion is the schema version before organizations, by dialect.
var previousVersion = map[sqlstore.Dialect]int{sqlstore.SQLite: 5, sqlstore.Postgres: 6, sqlstore.MySQL: 5}

// A database at the version before organizations, with users and changes
// in its feed, upgrades in place: the users and their changes stay (as
// users' changes), and organizations, memberships and their changes
// follow.
func TestMigrateAddsOrganizationsInPlace(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			db, table := b.Open(t)
			old, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if err := old.MigrateTo(ctx, previousVersion[b.Dialect]); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, sub := range []string{"user_1", "user_2"} {
				u, _, err := old.Upsert(ctx, userWrite(sub, 1))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, u.ID)
			}
			if _, _, err := old.Upsert(ctx, userWrite("user_1", 2)); err != nil {
				t.Fatal(err)
			}
			old.Close()

			s := b.StoreOn(t, db, table) // Migrate to the newest version
			cs, err := s.Changes(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			want := []struct {
				id      string
				outcome usersync.Outcome
			}{{ids[0], usersync.Created}, {ids[1], usersync.Created}, {ids[0], usersync.Updated}}
			if len(cs) != len(want) {
				t.Fatalf("changes after the upgrade: %+v", cs)
			}
			for i, c := range cs {
				if c.Entity != usersync.EntityUser || c.UserID != want[i].id || c.Outcome != want[i].outcome || c.OrganizationID != "" || c.Subject != "" {
					t.Fatalf("change %d after the upgrade: %+v", i, c)
				}
			}
			if u, err := s.GetByTokenIdentifier(ctx, usersync.TokenIdentifier(orgIssuer, "user_1")); err != nil || u.ID != ids[0] || u.Name != "User user_1" {
				t.Fatalf("user after the upgrade: %+v, %v", u, err)
			}
			if _, _, err := s.UpsertOrganization(ctx, org("org_1", 1)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.UpsertMembership(ctx, membership("org_1", "user_2", "orgmem_1", t0, 1)); err != nil {
				t.Fatal(err)
			}
			if _, out, err := s.Delete(ctx, userWrite("user_2", 1)); err != nil || out != usersync.Deleted {
				t.Fatalf("delete after the upgrade: %v, %v", out, err)
			}
			more, err := s.Changes(ctx, cs[len(cs)-1].Seq, 100)
			if err != nil {
				t.Fatal(err)
			}
			entities := []usersync.Entity{usersync.EntityOrganization, usersync.EntityMembership, usersync.EntityUser, usersync.EntityMembership}
			outcomes := []usersync.Outcome{usersync.Created, usersync.Created, usersync.Deleted, usersync.Deleted}
			if len(more) != len(entities) {
				t.Fatalf("changes after the upgrade's writes: %+v", more)
			}
			for i, c := range more {
				if c.Entity != entities[i] || c.Outcome != outcomes[i] {
					t.Fatalf("change %d: %+v", i, c)
				}
			}
		})
	}
}
