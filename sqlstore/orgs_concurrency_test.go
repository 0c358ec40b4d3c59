package sqlstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sqlstore"
)

// firstWritesRace runs the first write of one organization and one
// membership from every store at once, rounds times, and checks that
// each made one row: exactly one Created per key, and every caller got
// that row.
func firstWritesRace(t *testing.T, stores []*sqlstore.Store, rounds int) {
	t.Helper()
	ctx := context.Background()
	for r := range rounds {
		orgID, sub := fmt.Sprintf("org_race_%d", r), fmt.Sprintf("user_race_%d", r)
		const perStore = 3
		n := len(stores) * perStore
		orgOut, memberOut := make([]usersync.Outcome, n), make([]usersync.Outcome, n)
		memberIDs, errs := make([]string, n), make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			s := stores[i%len(stores)]
			wg.Go(func() {
				<-start
				var err error
				if _, orgOut[i], err = s.UpsertOrganization(ctx, org(orgID, 1)); err != nil {
					errs[i] = err
					return
				}
				// The same membership ID from every writer, each with its
				// own version: the newest wins, one row.
				var m orgs.Membership
				m, memberOut[i], errs[i] = s.UpsertMembership(ctx, membership(orgID, sub, "orgmem_race", t0, usersync.Version(i+1)))
				memberIDs[i] = m.ID
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, writer %d: %v", r, i, err)
			}
		}
		if c := count(orgOut, usersync.Created); c != 1 {
			t.Fatalf("round %d: %d organizations Created (%v), want 1", r, c, orgOut)
		}
		if c := count(memberOut, usersync.Created); c != 1 {
			t.Fatalf("round %d: %d memberships Created (%v), want 1", r, c, memberOut)
		}
		for _, id := range memberIDs {
			if id != "orgmem_race" {
				t.Fatalf("round %d: a writer got membership %q", r, id)
			}
		}
		m, err := stores[0].Member(ctx, orgIssuer, orgID, sub)
		if err != nil || m.Membership.Version != usersync.Version(n) {
			t.Fatalf("round %d: the membership after the race: %+v, %v; want version %d", r, m.Membership, err, n)
		}
		page, err := stores[len(stores)-1].Memberships(ctx, orgIssuer, orgID, "", 10)
		if err != nil || len(page) != 1 {
			t.Fatalf("round %d: memberships %+v, %v; want one", r, page, err)
		}
	}
}

func count(os []usersync.Outcome, o usersync.Outcome) int {
	n := 0
	for _, got := range os {
		if got == o {
			n++
		}
	}
	return n
}

// Concurrent first writes of an organization and a membership, through
// two pools (two app replicas), store one row each.
func TestOrganizationFirstWritesRace(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			first := b.StoreOn(t, db, table)
			second := b.StoreOn(t, b.OpenExtra(t, db), table)
			firstWritesRace(t, []*sqlstore.Store{first, second}, 5)
		})
	}
}

// The batches apply each write as the single write would, in order:
// writes of one key in one batch, batches larger than a chunk, all or
// nothing.
func TestOrganizationBatches(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			ctx := context.Background()
			s := b.NewStore(t)
			const n = 600 // more than two chunks
			var os []orgs.Organization
			var ms []orgs.Membership
			for i := range n {
				id := fmt.Sprintf("org_%04d", i)
				os = append(os, org(id, 1))
				ms = append(ms, membership(id, "user_1", "orgmem_"+id, t0, 1))
			}
			// Writes of one key again, later in the batch: one newer, one
			// older.
			os = append(os, org("org_0001", 2), org("org_0002", 0+1))
			ms = append(ms, membership("org_0001", "user_1", "orgmem_org_0001", t0, 2), membership("org_0001", "user_1", "orgmem_later", t0.Add(time.Hour), 1))
			outcomes, err := s.UpsertOrganizations(ctx, os)
			if err != nil || len(outcomes) != len(os) || count(outcomes[:n], usersync.Created) != n ||
				!slices.Equal(outcomes[n:], []usersync.Outcome{usersync.Updated, usersync.Stale}) {
				t.Fatalf("organizations: %v", err)
			}
			outcomes, err = s.UpsertMemberships(ctx, ms)
			if err != nil || len(outcomes) != len(ms) || count(outcomes[:n], usersync.Created) != n ||
				!slices.Equal(outcomes[n:], []usersync.Outcome{usersync.Updated, usersync.Updated}) {
				t.Fatalf("memberships: %v, %v", outcomes[n:], err)
			}
			if m, err := s.Member(ctx, orgIssuer, "org_0001", "user_1"); err != nil || m.Membership.ID != "orgmem_later" || m.Organization.Version != 2 {
				t.Fatalf("Member after the batch: %+v, %v", m, err)
			}
			page, err := s.UserMemberships(ctx, orgIssuer, "user_1", "", 1000)
			if err != nil || len(page) != n {
				t.Fatalf("UserMemberships: %d, %v", len(page), err)
			}
			// Again: every write is stale.
			outcomes, err = s.UpsertMemberships(ctx, ms[:n])
			if err != nil || count(outcomes, usersync.Stale) != n {
				t.Fatalf("again: %v, %v", outcomes, err)
			}
			// A malformed write fails the batch before anything is written.
			bad := append(slices.Clone(os[:3]), orgs.Organization{Issuer: orgIssuer, ID: "org_bad", UpdatedAt: t0})
			bad[0] = org("org_new", 1)
			if _, err := s.UpsertOrganizations(ctx, bad); err == nil {
				t.Fatal("a batch with a malformed write passed")
			}
			if _, err := s.Organization(ctx, orgIssuer, "org_new"); err == nil {
				t.Fatal("a failed batch wrote")
			}
			cs, err := s.Changes(ctx, 0, 10000)
			if err != nil || len(cs) != 2*n+1+2 {
				t.Fatalf("changes: %d, %v; want %d", len(cs), err, 2*n+3)
			}
		})
	}
}
