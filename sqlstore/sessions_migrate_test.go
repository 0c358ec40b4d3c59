package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/sqlstore"
)

// beforeSessions is the schema version before ended sessions, by dialect.
var beforeSessions = map[sqlstore.Dialect]int{sqlstore.SQLite: 6, sqlstore.Postgres: 7, sqlstore.MySQL: 6}

// A database at the version before ended sessions, with users, upgrades
// in place: the users stay, and a user's delete then records the ending
// of every session of the user, once.
func TestMigrateAddsEndedSessionsInPlace(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			db, table := b.Open(t)
			old, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if err := old.MigrateTo(ctx, beforeSessions[b.Dialect]); err != nil {
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
			if _, _, err := old.UpsertMembership(ctx, membership("org_1", "user_1", "orgmem_1", t0, 1)); err != nil {
				t.Fatal(err)
			}
			old.Close()

			s := b.StoreOn(t, db, table) // Migrate to the newest version
			if got := allEndings(t, s); len(got) != 0 {
				t.Fatalf("endings after the upgrade: %+v", got)
			}
			if u, err := s.GetByTokenIdentifier(ctx, usersync.TokenIdentifier(orgIssuer, "user_1")); err != nil || u.ID != ids[0] || u.Name != "User user_1" {
				t.Fatalf("user after the upgrade: %+v, %v", u, err)
			}
			at := t0.Add(time.Hour)
			del := usersync.Write{ID: ids[0], Issuer: orgIssuer, Subject: "user_1", TokenIdentifier: usersync.TokenIdentifier(orgIssuer, "user_1"), At: at}
			if _, out, err := s.Delete(ctx, del); err != nil || out != usersync.Deleted {
				t.Fatalf("delete after the upgrade: %v, %v", out, err)
			}
			if _, out, err := s.Delete(ctx, del); err != nil || out != usersync.Stale {
				t.Fatalf("second delete after the upgrade: %v, %v", out, err)
			}
			if err := s.EndSessions(ctx, sessions.Ending{Issuer: orgIssuer, SessionID: "sess_1", Subject: "user_2", EndedAt: at}); err != nil {
				t.Fatal(err)
			}
			got := allEndings(t, s)
			if len(got) != 2 || got[0].Subject != "user_1" || got[0].SessionID != "" || !got[0].EndedAt.Equal(at) || got[1].SessionID != "sess_1" {
				t.Fatalf("endings after the upgrade's writes: %+v", got)
			}
			if ms, err := s.Memberships(ctx, orgIssuer, "org_1", "", 10); err != nil || len(ms) != 0 {
				t.Fatalf("user_1's memberships after the delete: %+v, %v", ms, err)
			}
		})
	}
}
