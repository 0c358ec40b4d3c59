package sqlstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sqlstore"
)

// The longest table name New takes (48 characters) migrates on every
// dialect: each object named after it fits MySQL's identifier limit (64;
// PostgreSQL cuts a name past 63 short, and one of migration 4's is, which
// harms nothing while the cut names stay apart), and a user's delete,
// which ends their memberships and sessions, works on it.
func TestLongestTableNameMigratesAndDeletes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			db, table := b.Open(t)
			schema, _, _ := strings.Cut(table, ".")
			table = schema + "." + strings.Repeat("u", 48)
			if b.Env == "" {
				table = strings.Repeat("u", 48)
			}
			s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("Migrate of a 48-character table: %v", err)
			}
			w := userWrite("user_1", 1)
			if _, _, err := s.Upsert(ctx, w); err != nil {
				t.Fatal(err)
			}
			m := orgs.Membership{Issuer: w.Issuer, OrganizationID: "org_1", UserSubject: "user_1", ID: "orgmem_1", Role: "org:member", Version: 1, UpdatedAt: time.Now()}
			if _, _, err := s.UpsertMembership(ctx, m); err != nil {
				t.Fatal(err)
			}
			if _, o, err := s.Delete(ctx, usersync.Write{Issuer: w.Issuer, Subject: w.Subject, TokenIdentifier: w.TokenIdentifier, ID: "x", At: time.Now()}); err != nil || o != usersync.Deleted {
				t.Fatalf("Delete: %v, %v", o, err)
			}
			if _, _, err := s.UpsertMembership(ctx, m); !errorsIsDeleted(err) {
				t.Fatalf("a membership of the deleted user: %v, want orgs.ErrDeleted", err)
			}
			if got := allEndings(t, s); len(got) != 1 || got[0].Subject != "user_1" {
				t.Fatalf("the deleted user's ending: %+v", got)
			}
		})
	}
}

func errorsIsDeleted(err error) bool { return errors.Is(err, orgs.ErrDeleted) }
