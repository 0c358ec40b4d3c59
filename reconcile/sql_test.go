package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
)

// TestOnSQL backfills, heals and deletes on every SQL dialect, and runs
// two replicas (two pools) at once: one sweeps, the other finds it running.
func TestOnSQL(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			db, table := b.Open(t)
			store := b.StoreOn(t, db, table)
			e := newEnv(t, store)
			users := apiUsers(0, 1200, 1)
			e.api.Put(users...)
			report, err := e.run(reconcile.Config{})
			if err != nil || report.Created != 1200 || !report.Complete {
				t.Fatalf("%+v, %v", counts(report), err)
			}
			e.requireLive(users)
			u, err := store.GetByExternalID(context.Background(), issuer, "legacy-1001")
			if err != nil || u.Subject != "user_01001" {
				t.Fatalf("by external ID: %+v, %v", u, err)
			}

			e.api.Remove("user_00007", "user_00700")
			e.api.Put(apiUser(9, 2))
			replicaB := newEnv(t, b.StoreOn(t, b.OpenExtra(t, db), table))
			replicaB.api, replicaB.list = e.api, e.list
			inside, release := make(chan struct{}), make(chan struct{})
			e.onPage(func(n, _ int) {
				if n == 2 {
					close(inside)
					<-release
				}
			})
			done := make(chan error)
			var a reconcile.Report
			go func() {
				var err error
				a, err = e.reconciler(reconcile.Config{Holder: "a"}).Run(context.Background())
				done <- err
			}()
			<-inside
			if _, err := replicaB.reconciler(reconcile.Config{Holder: "b"}).Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
				t.Errorf("replica b: %v, want ErrRunning", err)
			}
			close(release)
			if err := <-done; err != nil || a.Deleted != 2 || a.Updated != 1 || a.Unchanged != 1197 {
				t.Fatalf("%+v, %v", counts(a), err)
			}
			for _, id := range []string{"user_00007", "user_00700"} {
				if _, err := e.stored(id); !errors.Is(err, usersync.ErrDeleted) {
					t.Fatalf("%s: %v", id, err)
				}
			}
		})
	}
}

// perUser is a store that writes a batch one upsert at a time: the floor a
// batch is measured against.
type perUser struct{ leasing }

func (s perUser) UpsertBatch(ctx context.Context, ws []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	users, outcomes := make([]usersync.User, len(ws)), make([]usersync.Outcome, len(ws))
	for i, w := range ws {
		u, o, err := s.Upsert(ctx, w)
		if errors.Is(err, usersync.ErrDeleted) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		users[i], outcomes[i] = u, o
	}
	return users, outcomes, nil
}

// BenchmarkBackfill imports USERSYNC_BENCH_USERS (default 100,000) users
// from the fake Backend API over HTTP into an empty store, in batches of a
// page as the reconciler writes them and, as the floor, one upsert per
// user. users/s is the figure; run with -benchtime 1x.
func BenchmarkBackfill(b *testing.B) {
	n := 100_000
	if s := os.Getenv("USERSYNC_BENCH_USERS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	api := clerktest.NewAPI(b)
	for i := range n {
		api.Put(apiUser(i, 1))
	}
	p, err := clerk.New(clerk.Config{Issuer: issuer, SecretKey: api.SecretKey, APIURL: api.URL, PublicKeyPEM: api.PublicKeyPEM()})
	if err != nil {
		b.Fatal(err)
	}
	list, err := p.UserList()
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range testdb.Backends[:2] { // SQLite and PostgreSQL
		for _, mode := range []string{"batch", "per-user"} {
			b.Run(be.Name+"/"+mode, func(b *testing.B) {
				be.SkipIfUnset(b)
				for b.Loop() {
					b.StopTimer()
					var store leasing = be.NewStore(b)
					if mode == "per-user" {
						store = perUser{store}
					}
					syncer, err := usersync.New(usersync.Config{Store: store, Logger: quiet})
					if err != nil {
						b.Fatal(err)
					}
					r, err := reconcile.New(reconcile.Config{Syncer: syncer, Source: list, Logger: quiet})
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					report, err := r.Run(context.Background())
					if err != nil || report.Created != n {
						b.Fatalf("%+v, %v", counts(report), err)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "users/s")
			})
		}
	}
}

// TestOrganizationsOnSQL backfills, heals and deletes organizations and
// memberships on every SQL dialect, refuses a mass delete there, and runs
// two replicas (two pools) at once: one sweeps, the other finds it
// running.
func TestOrganizationsOnSQL(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			db, table := b.Open(t)
			e := newOrgEnv(t, b.StoreOn(t, db, table))
			e.src.fill(0, 300, some, 1)
			report, err := e.run(reconcile.OrganizationConfig{PageSize: 100})
			if err != nil || report.Organizations.Created != 300 || report.Memberships.Created != 897 || !report.Complete {
				t.Fatalf("%+v, %v", orgCounts(report), err)
			}
			e.requireLive()

			// Missed webhooks: an organization deleted, a member left, one
			// joined, one promoted, an organization created and one renamed.
			e.src.remove(orgID(13))
			e.src.removeMember(orgID(20), "user_00001")
			e.src.putMembers(member(20, 50, 1), member(22, 0, 2))
			e.src.put(org(300, 1), org(40, 2))
			e.src.putMembers(member(300, 0, 1))
			replicaB := newOrgEnv(t, b.StoreOn(t, b.OpenExtra(t, db), table))
			replicaB.src = e.src
			inside, release := make(chan struct{}), make(chan struct{})
			e.src.setBefore(func(_ int, id string, offset int) error {
				if id == "" && offset == 99 { // the second page
					close(inside)
					<-release
				}
				return nil
			})
			done := make(chan error)
			var a reconcile.OrganizationReport
			go func() {
				var err error
				a, err = e.reconciler(reconcile.OrganizationConfig{PageSize: 100, Holder: "a"}).Run(context.Background())
				done <- err
			}()
			<-inside
			if _, err := replicaB.reconciler(reconcile.OrganizationConfig{Holder: "b"}).Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
				t.Errorf("replica b: %v, want ErrRunning", err)
			}
			close(release)
			if err := <-done; err != nil || a.Organizations.Deleted != 1 || a.Organizations.Created != 1 || a.Organizations.Updated != 1 ||
				a.Memberships.Deleted != 1 || a.Memberships.Created != 2 || a.Memberships.Updated != 1 {
				t.Fatalf("%+v, %v", orgCounts(a), err)
			}
			e.src.setBefore(nil)
			e.requireLive()
			if _, err := e.store.Organization(context.Background(), issuer, orgID(13)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("the deleted organization: %v", err)
			}

			// A mass delete is refused before anything is written.
			before := e.live()
			for i := range 200 { // a member of 171 of them: a fifth of the memberships
				e.src.removeMember(orgID(i), "user_00000")
			}
			e.src.put(org(41, 2))
			report, err = e.run(reconcile.OrganizationConfig{})
			if !errors.Is(err, reconcile.ErrMassDelete) || len(report.Memberships.Refused) == 0 || report.Organizations.Updated != 0 {
				t.Fatalf("%+v, %v; want ErrMassDelete", orgCounts(report), err)
			}
			if after := e.live(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatal("a refused run changed the store")
			}
		})
	}
}
