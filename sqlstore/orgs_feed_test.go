package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sqlstore"
)

// Every write of an organization or a membership that changes it is a
// change of the feed, in the write's transaction, as are the memberships
// that the delete of their organization or user ends (with an OnWrite
// hook too); the users' changes stay as they were.
func TestOrganizationChangesInTheFeed(t *testing.T) {
	for _, b := range backends {
		for _, hooked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/hook=%v", b.Name, hooked), func(t *testing.T) {
				b.SkipIfUnset(t)
				ctx := context.Background()
				db, table := b.Open(t)
				cfg := sqlstore.Config{Table: table}
				var hookCalls []usersync.Change
				if hooked {
					cfg.OnWrite = func(_ context.Context, _ *sql.Tx, c usersync.Change) error {
						hookCalls = append(hookCalls, c)
						return nil
					}
				}
				s := b.StoreWith(t, db, cfg)
				step := func(what string, _ any, _ usersync.Outcome, err error) {
					t.Helper()
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
				}
				u, _, err := s.Upsert(ctx, userWrite("user_1", 1))
				step("user", u, 0, err)
				o, out, err := s.UpsertOrganization(ctx, org("org_1", 1))
				step("org", o, out, err)
				m, out, err := s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_1", t0, 1))
				step("membership", m, out, err)
				_, out, err = s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_1", t0, 1)) // stale: no change
				step("stale membership", nil, out, err)
				m2, out, err := s.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_1", t0, 2))
				step("membership update", m2, out, err)
				_, out, err = s.UpsertOrganization(ctx, org("org_1", 1)) // stale
				step("stale org", nil, out, err)
				_, err = s.UpsertMemberships(ctx, []orgs.Membership{membership("org_1", "user_2", "orgmem_2", t0, 1), membership("org_1", "user_2", "orgmem_2", t0, 2)})
				step("batch", nil, 0, err)
				deletedAt := t0.Add(time.Hour)
				w := userWrite("user_1", 1)
				w.At = deletedAt
				_, out, err = s.Delete(ctx, w)
				if err != nil || out != usersync.Deleted {
					t.Fatalf("user delete: %v, %v", out, err)
				}
				orgAt := t0.Add(2 * time.Hour)
				_, out, err = s.DeleteOrganization(ctx, orgIssuer, "org_1", orgAt)
				if err != nil || out != usersync.Deleted {
					t.Fatalf("org delete: %v, %v", out, err)
				}

				type change struct {
					entity      usersync.Entity
					outcome     usersync.Outcome
					user, org   string
					subject, at string
				}
				ms := func(t time.Time) string { return fmt.Sprint(t.UnixMilli()) }
				want := []change{
					{usersync.EntityUser, usersync.Created, u.ID, "", "", ms(t0)},
					{usersync.EntityOrganization, usersync.Created, "", "org_1", "", ms(o.UpdatedAt)},
					{usersync.EntityMembership, usersync.Created, "", "org_1", "user_1", ms(m.UpdatedAt)},
					{usersync.EntityMembership, usersync.Updated, "", "org_1", "user_1", ms(m2.UpdatedAt)},
					{usersync.EntityMembership, usersync.Created, "", "org_1", "user_2", ms(t0.Add(time.Second))},
					{usersync.EntityMembership, usersync.Updated, "", "org_1", "user_2", ms(t0.Add(2 * time.Second))},
					{usersync.EntityUser, usersync.Deleted, u.ID, "", "", ms(deletedAt)},
					{usersync.EntityMembership, usersync.Deleted, "", "org_1", "user_1", ms(deletedAt)},
					{usersync.EntityOrganization, usersync.Deleted, "", "org_1", "", ms(orgAt)},
					{usersync.EntityMembership, usersync.Deleted, "", "org_1", "user_2", ms(orgAt)},
				}
				cs, err := s.Changes(ctx, 0, 100)
				if err != nil {
					t.Fatal(err)
				}
				var got []change
				for i, c := range cs {
					if i > 0 && c.Seq <= cs[i-1].Seq {
						t.Fatalf("seq %d after %d", c.Seq, cs[i-1].Seq)
					}
					got = append(got, change{c.Entity, c.Outcome, c.UserID, c.OrganizationID, c.Subject, ms(c.At)})
				}
				if !slices.Equal(got, want) {
					t.Fatalf("changes:\n%+v\nwant\n%+v", got, want)
				}
				if hooked && len(hookCalls) != 2 { // the user's Created and Deleted
					t.Fatalf("hook calls: %+v", hookCalls)
				}
			})
		}
	}
}
