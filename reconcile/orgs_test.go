package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
)

// orgStore is a store of organizations with leases: what an
// OrganizationReconciler runs on.
type orgStore interface {
	orgs.Store
	lease.Store
}

// orgEnv is a provider's organizations and an app's store.
type orgEnv struct {
	t       *testing.T
	src     *orgDirectory
	store   orgStore
	syncer  *orgs.Syncer
	changes atomic.Int64
}

func newOrgEnv(t *testing.T, store orgStore) *orgEnv {
	t.Helper()
	e := &orgEnv{t: t, src: newOrgDirectory(issuer), store: store}
	var err error
	e.syncer, err = orgs.New(orgs.Config{Store: store, Logger: quiet, OnChange: func(context.Context, usersync.Change) { e.changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *orgEnv) reconciler(cfg reconcile.OrganizationConfig) *reconcile.OrganizationReconciler {
	e.t.Helper()
	cfg.Syncer, cfg.Source = e.syncer, e.src
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := reconcile.NewOrganizations(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *orgEnv) run(cfg reconcile.OrganizationConfig) (reconcile.OrganizationReport, error) {
	e.t.Helper()
	return e.reconciler(cfg).Run(context.Background())
}

// live returns the live organizations of the issuer, with the subjects of
// their live members.
func (e *orgEnv) live() map[string][]string {
	e.t.Helper()
	ctx := context.Background()
	live := map[string][]string{}
	for after := ""; ; {
		os, err := e.store.Organizations(ctx, issuer, after, 100)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, o := range os {
			subjects := []string{}
			for mafter := ""; ; {
				ms, err := e.store.Memberships(ctx, issuer, o.ID, mafter, 100)
				if err != nil {
					e.t.Fatal(err)
				}
				for _, m := range ms {
					subjects = append(subjects, m.UserSubject)
				}
				if len(ms) < 100 {
					break
				}
				mafter = ms[len(ms)-1].UserSubject
			}
			live[o.ID] = subjects
		}
		if len(os) < 100 {
			return live
		}
		after = os[len(os)-1].ID
	}
}

// requireLive checks that the store holds exactly what the directory
// lists (hidden items too), live, at its revision.
func (e *orgEnv) requireLive() {
	e.t.Helper()
	ctx := context.Background()
	e.src.mu.Lock()
	want := map[string][]orgs.Membership{}
	var os []orgs.Organization
	for _, o := range e.src.orgs {
		os = append(os, o)
		want[o.ID] = append([]orgs.Membership(nil), e.src.members[o.ID]...)
	}
	e.src.mu.Unlock()
	live := e.live()
	if len(live) != len(os) {
		e.t.Fatalf("%d live organizations, want %d", len(live), len(os))
	}
	for _, o := range os {
		got, err := e.store.Organization(ctx, issuer, o.ID)
		if err != nil || got.Name != o.Name || got.Version != o.Version {
			e.t.Fatalf("%s stored as %q at %d (%v), want %q at %d", o.ID, got.Name, got.Version, err, o.Name, o.Version)
		}
		if len(live[o.ID]) != len(want[o.ID]) {
			e.t.Fatalf("%s: %d live members, want %d", o.ID, len(live[o.ID]), len(want[o.ID]))
		}
		for _, m := range want[o.ID] {
			got, err := e.store.Member(ctx, issuer, o.ID, m.UserSubject)
			if err != nil || got.Membership.Role != m.Role || got.Membership.Version != m.Version || got.Membership.ID != m.ID {
				e.t.Fatalf("%s in %s: %+v, %v; want %s at %d", m.UserSubject, o.ID, got.Membership, err, m.Role, m.Version)
			}
		}
	}
}

// orgCounts is a report without its times and refusals, to compare.
func orgCounts(r reconcile.OrganizationReport) reconcile.OrganizationReport {
	r.Started, r.Finished = time.Time{}, time.Time{}
	r.Organizations.Refused, r.Memberships.Refused = nil, nil
	return r
}

// some gives organization i between 0 and 6 members.
func some(i int) int { return i % 7 }

func TestOrganizationsBackfillThenNothingChanges(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 234, some, 1)
	nMembers := 0
	for i := range 234 {
		nMembers += some(i)
	}
	var progress []reconcile.OrganizationReport
	report, err := e.run(reconcile.OrganizationConfig{PageSize: 50, OnProgress: func(r reconcile.OrganizationReport) { progress = append(progress, r) }})
	if err != nil {
		t.Fatal(err)
	}
	want := reconcile.OrganizationReport{Issuer: issuer, Complete: true,
		Organizations: reconcile.Counts{Listed: 234, Created: 234}, Memberships: reconcile.Counts{Listed: nMembers, Created: nMembers}}
	if got := orgCounts(report); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("report %+v, want %+v", got, want)
	}
	// A page of organizations is written before their memberships are
	// listed, then their memberships in pages; then the final report.
	last := progress[len(progress)-1]
	if first := progress[0]; first.Organizations.Listed != 50 || first.Memberships.Listed != 0 || fmt.Sprint(last) != fmt.Sprint(report) {
		t.Fatalf("progress: first %+v, last %+v", first, last)
	}
	for i := 1; i < len(progress); i++ {
		if p, q := progress[i-1], progress[i]; q.Organizations.Listed < p.Organizations.Listed || q.Memberships.Listed < p.Memberships.Listed {
			t.Fatalf("progress went back: %+v, then %+v", p, q)
		}
	}
	e.requireLive()
	if n := e.changes.Load(); n != int64(234+nMembers) {
		t.Fatalf("%d changes, want %d", n, 234+nMembers)
	}

	// Twice changes nothing.
	report, err = e.run(reconcile.OrganizationConfig{PageSize: 50})
	want.Organizations = reconcile.Counts{Listed: 234, Unchanged: 234}
	want.Memberships = reconcile.Counts{Listed: nMembers, Unchanged: nMembers}
	if got := orgCounts(report); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("second run %+v, %v", got, err)
	}
	if n := e.changes.Load(); n != int64(234+nMembers) {
		t.Fatalf("a second run changed %d items", n-int64(234+nMembers))
	}
}

// TestOrganizationsHealMissedWebhooks: what the provider created, updated
// and deleted while webhooks were missed is created, updated and deleted.
func TestOrganizationsHealMissedWebhooks(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 100, func(int) int { return 5 }, 1)
	if _, err := e.run(reconcile.OrganizationConfig{}); err != nil {
		t.Fatal(err)
	}
	// Another issuer's organization is never this reconcile's to delete.
	other := org(3, 1)
	other.Issuer, other.UpdatedAt = "https://other.example.com", time.Now()
	if _, _, err := e.syncer.UpsertOrganization(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	e.src.remove(orgID(7), orgID(50))           // 2 organizations, with their 10 members
	e.src.removeMember(orgID(20), "user_00003") // a member left
	e.src.removeMember(orgID(21), "user_00000")
	e.src.put(org(100, 1), org(30, 2))                                                         // an organization created, one renamed
	e.src.putMembers(member(100, 0, 1), member(100, 1, 1), member(40, 9, 1), member(41, 2, 2)) // members joined, one promoted
	report, err := e.run(reconcile.OrganizationConfig{})
	if err != nil || !report.Complete {
		t.Fatalf("%+v, %v", orgCounts(report), err)
	}
	o, m := report.Organizations, report.Memberships
	if o.Created != 1 || o.Updated != 1 || o.Deleted != 2 || o.Unchanged != 97 || o.Listed != 99 {
		t.Fatalf("organizations %+v", o)
	}
	if m.Created != 3 || m.Updated != 1 || m.Deleted != 2 || m.Unchanged != 98*5-2-1 {
		t.Fatalf("memberships %+v", m)
	}
	e.requireLive()
	ctx := context.Background()
	for _, id := range []string{orgID(7), orgID(50)} {
		if _, err := e.store.Organization(ctx, issuer, id); !errors.Is(err, orgs.ErrDeleted) {
			t.Fatalf("%s: %v, want ErrDeleted", id, err)
		}
		// Its memberships ended with it.
		if _, err := e.store.Member(ctx, issuer, id, "user_00001"); err == nil {
			t.Fatalf("a member of the deleted %s is still one", id)
		}
	}
	if _, err := e.store.Member(ctx, issuer, orgID(20), "user_00003"); !errors.Is(err, orgs.ErrNotMember) {
		t.Fatalf("the member who left: %v, want ErrNotMember", err)
	}
	if _, err := e.store.Organization(ctx, other.Issuer, other.ID); err != nil {
		t.Fatalf("the other issuer's organization: %v", err)
	}
}

// TestOrganizationsGuard: deletions beyond the guard are refused before
// anything is written, for organizations and for memberships; the
// memberships are counted in total, not per organization.
func TestOrganizationsGuard(t *testing.T) {
	for _, tc := range []struct {
		name          string
		orgs, members int // organizations, members of each
		removeOrgs    int
		removeMembers int // of organization 1, then 2, ...: members each
		membersOf     int // organizations that lose removeMembers members
		cfg           reconcile.OrganizationConfig
		refused       error
		refusedOrgs   int
		refusedMember int
	}{
		{"10 organizations, whatever the share", 50, 2, 10, 0, 0, reconcile.OrganizationConfig{}, nil, 0, 0},
		{"10% of the organizations", 200, 1, 20, 0, 0, reconcile.OrganizationConfig{}, nil, 0, 0},
		{"more than 10 and 10% of the organizations", 100, 1, 11, 0, 0, reconcile.OrganizationConfig{}, reconcile.ErrMassDelete, 11, 0},
		{"every organization", 30, 1, 30, 0, 0, reconcile.OrganizationConfig{}, reconcile.ErrForeignList, 0, 0},
		{"every organization, overridden", 30, 1, 30, 0, 0, reconcile.OrganizationConfig{AllowMassDelete: true}, nil, 0, 0},
		{"10% of the memberships", 50, 10, 0, 5, 10, reconcile.OrganizationConfig{}, nil, 0, 0},
		{"more than 10% of the memberships", 50, 10, 0, 6, 10, reconcile.OrganizationConfig{}, reconcile.ErrMassDelete, 0, 60},
		{"every member of one organization, 6% in total", 50, 30, 0, 30, 3, reconcile.OrganizationConfig{}, nil, 0, 0},
		{"every member of every organization", 40, 5, 0, 5, 40, reconcile.OrganizationConfig{}, reconcile.ErrMassDelete, 0, 200},
		{"memberships, overridden", 40, 5, 0, 5, 40, reconcile.OrganizationConfig{AllowMassDelete: true}, nil, 0, 0},
		{"both refused at once", 100, 2, 20, 2, 40, reconcile.OrganizationConfig{}, reconcile.ErrMassDelete, 20, 80},
		{"a tighter count", 100, 2, 3, 0, 0, reconcile.OrganizationConfig{MaxDeleteCount: 2, MaxDeleteShare: 0.01}, reconcile.ErrMassDelete, 3, 0},
		{"no allowance at all", 100, 2, 0, 1, 1, reconcile.OrganizationConfig{MaxDeleteCount: -1, MaxDeleteShare: -1}, reconcile.ErrMassDelete, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newOrgEnv(t, memstore.New())
			e.src.fill(0, tc.orgs, func(int) int { return tc.members }, 1)
			if _, err := e.run(reconcile.OrganizationConfig{}); err != nil {
				t.Fatal(err)
			}
			before := e.live()
			for i := range tc.removeOrgs {
				e.src.remove(orgID(tc.orgs - 1 - i))
			}
			for i := range tc.membersOf {
				for j := range tc.removeMembers {
					e.src.removeMember(orgID(i), fmt.Sprintf("user_%05d", j))
				}
			}
			// A rename in the same run: a refused run writes nothing.
			renamed := tc.orgs - 1 - tc.removeOrgs
			if renamed >= 0 {
				e.src.put(org(renamed, 2))
			}
			logs, log := telemetrytest.NewLogs()
			tc.cfg.Logger = log
			report, err := e.run(tc.cfg)
			if tc.refused == nil {
				if err != nil || report.Organizations.Deleted != tc.removeOrgs || report.Memberships.Deleted != tc.removeMembers*tc.membersOf {
					t.Fatalf("%+v, %v", orgCounts(report), err)
				}
				e.requireLive()
				return
			}
			if !errors.Is(err, tc.refused) || report.Organizations.Deleted+report.Memberships.Deleted != 0 || report.Organizations.Updated != 0 {
				t.Fatalf("%+v, %v; want %v and nothing written", orgCounts(report), err, tc.refused)
			}
			if len(report.Organizations.Refused) != tc.refusedOrgs || len(report.Memberships.Refused) != tc.refusedMember {
				t.Fatalf("refused %d organizations and %d memberships, want %d and %d", len(report.Organizations.Refused), len(report.Memberships.Refused), tc.refusedOrgs, tc.refusedMember)
			}
			if tc.refusedOrgs > 0 && !strings.Contains(logs.String(), report.Organizations.Refused[0]) {
				t.Fatalf("the refusal does not log the organizations:\n%s", logs)
			}
			if tc.refusedMember > 0 && (!strings.Contains(logs.String(), report.Memberships.Refused[0]) || !strings.Contains(logs.String(), "would_delete="+fmt.Sprint(tc.refusedMember))) {
				t.Fatalf("the refusal does not log the memberships:\n%s", logs)
			}
			if after := e.live(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatal("a refused run changed the store")
			}
			if renamed >= 0 {
				if o, err := e.store.Organization(context.Background(), issuer, orgID(renamed)); err != nil || o.Name != org(renamed, 1).Name {
					t.Fatalf("the renamed organization: %+v, %v", o, err)
				}
			}
		})
	}
}

// TestOrganizationsAnotherInstancesListIsRefused: a list that shares
// almost no organization with the store imports nothing and deletes
// nothing, and says why.
func TestOrganizationsAnotherInstancesListIsRefused(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 40, some, 1)
	if _, err := e.run(reconcile.OrganizationConfig{}); err != nil {
		t.Fatal(err)
	}
	before := e.live()
	for i := range 40 {
		e.src.remove(orgID(i))
	}
	e.src.fill(1000, 1400, some, 1)
	e.src.fill(0, 3, some, 1) // 3 of the 40 still listed: less than a tenth
	report, err := e.run(reconcile.OrganizationConfig{MaxDeleteShare: 1, MaxDeleteCount: 1000})
	if !errors.Is(err, reconcile.ErrForeignList) || !strings.Contains(err.Error(), "another instance") || report.Organizations.Created != 0 || report.Memberships.Created != 0 {
		t.Fatalf("%+v, %v; want ErrForeignList", orgCounts(report), err)
	}
	if after := e.live(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a refused run changed the store")
	}
}

// TestOrganizationsAFailingListDeletesNothing: a page of organizations or
// of memberships that fails for good leaves the run incomplete: into a
// store with organizations, nothing is written, nothing deleted; the next
// run heals.
func TestOrganizationsAFailingListDeletesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(n int, orgID string, offset int) bool
	}{
		{"the second page of organizations", func(_ int, id string, offset int) bool { return id == "" && offset > 0 }},
		{"the memberships of an organization", func(_ int, id string, _ int) bool { return id == orgID(33) }},
		{"the second page of an organization's memberships", func(_ int, id string, offset int) bool { return id == orgID(1) && offset > 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newOrgEnv(t, memstore.New())
			e.src.fill(0, 60, func(i int) int { return map[bool]int{true: 25, false: 3}[i == 1] }, 1)
			if _, err := e.run(reconcile.OrganizationConfig{PageSize: 20}); err != nil {
				t.Fatal(err)
			}
			before := e.live()
			e.src.remove(orgID(5))
			e.src.removeMember(orgID(6), "user_00001")
			e.src.put(org(40, 2))
			errDown := errors.New("403 forbidden")
			e.src.setBefore(func(n int, id string, offset int) error {
				if tc.fail(n, id, offset) {
					return errDown
				}
				return nil
			})
			report, err := e.run(reconcile.OrganizationConfig{PageSize: 20})
			if !errors.Is(err, errDown) || report.Complete || report.Organizations.Deleted+report.Memberships.Deleted != 0 || report.Organizations.Updated != 0 {
				t.Fatalf("%+v, %v; want an incomplete sweep", orgCounts(report), err)
			}
			if after := e.live(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatal("an incomplete run changed the store")
			}
			e.src.setBefore(nil)
			report, err = e.run(reconcile.OrganizationConfig{PageSize: 20})
			if err != nil || report.Organizations.Deleted != 1 || report.Memberships.Deleted != 1 || report.Organizations.Updated != 1 {
				t.Fatalf("%+v, %v", orgCounts(report), err)
			}
			e.requireLive()
		})
	}
	// Into an empty store, the pages before the failure are written, and
	// nothing is deleted.
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 60, some, 1)
	e.src.setBefore(func(_ int, id string, offset int) error {
		if id == "" && offset > 0 {
			return errors.New("503")
		}
		return nil
	})
	report, err := e.run(reconcile.OrganizationConfig{PageSize: 20})
	if err == nil || report.Complete || report.Organizations.Created != 20 {
		t.Fatalf("%+v, %v", orgCounts(report), err)
	}
}

// failingOrgStore fails the batches of memberships fail picks.
type failingOrgStore struct {
	orgStore
	fail func(ms []orgs.Membership) bool
}

func (s *failingOrgStore) UpsertMemberships(ctx context.Context, ms []orgs.Membership) ([]usersync.Outcome, error) {
	if s.fail != nil && s.fail(ms) {
		return nil, errors.New("store down")
	}
	return s.orgStore.UpsertMemberships(ctx, ms)
}

// TestOrganizationsABatchTheStoreFailsDeletesNothing: a batch the store
// fails is counted out, the rest is written, and nothing is deleted.
func TestOrganizationsABatchTheStoreFailsDeletesNothing(t *testing.T) {
	store := &failingOrgStore{orgStore: memstore.New()}
	e := newOrgEnv(t, store)
	e.src.fill(0, 30, func(int) int { return 4 }, 1)
	if _, err := e.run(reconcile.OrganizationConfig{PageSize: 10}); err != nil {
		t.Fatal(err)
	}
	e.src.fill(0, 30, func(int) int { return 4 }, 2)
	e.src.remove(orgID(2))
	// The batch with the memberships of organization 15 fails.
	lost := 0
	store.fail = func(ms []orgs.Membership) bool {
		for _, m := range ms {
			if m.OrganizationID == orgID(15) {
				lost = len(ms)
				return true
			}
		}
		return false
	}
	report, err := e.run(reconcile.OrganizationConfig{PageSize: 10})
	if err == nil || !strings.Contains(err.Error(), "store down") || report.Complete || report.Organizations.Deleted != 0 {
		t.Fatalf("%+v, %v", orgCounts(report), err)
	}
	if lost == 0 || report.Organizations.Updated != 29 || report.Memberships.Updated != 29*4-lost {
		t.Fatalf("%+v: want the other batches written (%d memberships lost)", orgCounts(report), lost)
	}
	if _, err := e.store.Organization(context.Background(), issuer, orgID(2)); err != nil {
		t.Fatalf("deleted after an incomplete sweep: %v", err)
	}
	// Three batches in a row: the store is down, the sweep stops.
	e.src.fill(0, 30, func(int) int { return 4 }, 3)
	store.fail = func([]orgs.Membership) bool { return true }
	report, err = e.run(reconcile.OrganizationConfig{PageSize: 10})
	if err == nil || report.Complete || report.Organizations.Listed == 29 {
		t.Fatalf("%+v, %v: want a stop after 3 failed batches", orgCounts(report), err)
	}
}

// TestOrganizationsThatCannotBeStoredAreSkipped: a malformed organization
// or membership (or one of another issuer) is skipped and counted, the
// rest of its batch written, and the run completes.
func TestOrganizationsThatCannotBeStoredAreSkipped(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 20, func(int) int { return 3 }, 1)
	long := org(20, 1)
	long.ID = "org_" + strings.Repeat("x", 300)
	foreign := org(21, 1)
	foreign.Issuer = "https://other.example.com"
	badMember := member(5, 3, 1)
	badMember.Role = strings.Repeat("r", 300)
	otherOrg := member(6, 4, 1)
	otherOrg.OrganizationID = orgID(7) // listed under organization 6
	e.src.put(long, foreign)
	e.src.putMembers(badMember)
	e.src.mu.Lock()
	e.src.members[orgID(6)] = append(e.src.members[orgID(6)], otherOrg)
	e.src.mu.Unlock()
	var logs strings.Builder
	for range 2 {
		logs.Reset()
		report, err := e.run(reconcile.OrganizationConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil || !report.Complete || report.Organizations.Skipped != 2 || report.Memberships.Skipped != 2 ||
			report.Organizations.Created+report.Organizations.Unchanged != 20 || report.Memberships.Created+report.Memberships.Unchanged != 60 {
			t.Fatalf("%+v, %v", orgCounts(report), err)
		}
		if strings.Contains(logs.String(), strings.Repeat("x", 300)) || !strings.Contains(logs.String(), "skipped") {
			t.Fatalf("logs:\n%s", logs.String())
		}
	}
	if n := len(e.live()); n != 20 {
		t.Fatalf("%d live organizations", n)
	}
}

// TestOrganizationsListsThatChangeUnderTheSweep: organizations and
// memberships deleted before the offset during the sweep move the lists
// left; nothing the provider has may be lost, nothing it has deleted.
func TestOrganizationsListsThatChangeUnderTheSweep(t *testing.T) {
	for _, stored := range []bool{false, true} {
		t.Run(fmt.Sprint("stored=", stored), func(t *testing.T) {
			e := newOrgEnv(t, memstore.New())
			perOrg := func(i int) int { return map[bool]int{true: 95, false: 2}[i == 3] }
			e.src.fill(0, 200, perOrg, 1)
			if stored {
				if _, err := e.run(reconcile.OrganizationConfig{PageSize: 40}); err != nil {
					t.Fatal(err)
				}
			}
			var deletedEarly []string
			orgPages, memberPages := 0, 0
			e.src.setBefore(func(_ int, id string, offset int) error {
				switch {
				case id == "":
					orgPages++
					if orgPages == 3 {
						// 5 organizations already listed are deleted: the
						// list moves left by 5.
						for i := range 5 {
							e.src.remove(orgID(i * 10))
							deletedEarly = append(deletedEarly, orgID(i*10))
						}
						e.src.put(org(500, 1)) // created: comes last
					}
				case id == orgID(3) && offset > 0:
					memberPages++
					if memberPages == 1 {
						// Members already listed leave: its list moves left.
						for j := range 7 {
							e.src.removeMember(orgID(3), fmt.Sprintf("user_%05d", j))
						}
					}
				}
				return nil
			})
			report, err := e.run(reconcile.OrganizationConfig{PageSize: 40})
			if err != nil || !report.Complete || report.Organizations.Deleted != 0 {
				t.Fatalf("%+v, %v", orgCounts(report), err)
			}
			// Every organization and member the provider has is stored.
			live := e.live()
			if len(live) != 201 || len(live[orgID(500)]) != 0 {
				t.Fatalf("%d live organizations, want the 195 left, the 5 deleted during the sweep, and the new one", len(live))
			}
			// Its members who left after they were listed stay until the
			// next run.
			if n := len(live[orgID(3)]); n != 95 {
				t.Fatalf("organization 3 has %d live members", n)
			}
			for j := range 95 {
				if _, err := e.store.Member(context.Background(), issuer, orgID(3), fmt.Sprintf("user_%05d", j)); err != nil {
					t.Fatalf("member %d: %v", j, err)
				}
			}
			// What was deleted after it was listed goes at the next run.
			e.src.setBefore(nil)
			report, err = e.run(reconcile.OrganizationConfig{PageSize: 40})
			if err != nil || report.Organizations.Deleted != len(deletedEarly) || report.Memberships.Deleted != 7 {
				t.Fatalf("second run: %+v, %v", orgCounts(report), err)
			}
			e.requireLive()
		})
	}
}

// TestOrganizationsTheLookupKeepsWhatTheListMissed: an organization or a
// membership that the lists skip (as a list moving under the sweep can)
// but the provider has is written, not deleted.
func TestOrganizationsTheLookupKeepsWhatTheListMissed(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 20, func(int) int { return 3 }, 1)
	if _, err := e.run(reconcile.OrganizationConfig{}); err != nil {
		t.Fatal(err)
	}
	e.src.put(org(4, 2))
	e.src.putMembers(member(4, 0, 2), member(4, 5, 1), member(9, 1, 2))
	e.src.hide(orgID(4), true)
	e.src.hide(member(9, 1, 1).ID, true)
	report, err := e.run(reconcile.OrganizationConfig{})
	if err != nil || report.Organizations.Deleted+report.Memberships.Deleted != 0 || report.Organizations.Updated != 1 || report.Memberships.Updated != 2 || report.Memberships.Created != 1 {
		t.Fatalf("%+v, %v", orgCounts(report), err)
	}
	e.requireLive()
}

// TestOrganizationsDeletedDuringTheSweep: an organization that the
// provider deletes after listing it and before listing its memberships
// (which then answer orgs.ErrNotFound) has none of them written. Into a
// store that held it, it is deleted once the provider confirms it; in a
// first import, its page was written before (as a user deleted after its
// page was listed is), and the next run deletes it.
func TestOrganizationsDeletedDuringTheSweep(t *testing.T) {
	for _, stored := range []bool{false, true} {
		t.Run(fmt.Sprint("stored=", stored), func(t *testing.T) {
			e := newOrgEnv(t, memstore.New())
			e.src.fill(0, 30, func(int) int { return 2 }, 1)
			if stored {
				if _, err := e.run(reconcile.OrganizationConfig{}); err != nil {
					t.Fatal(err)
				}
			}
			e.src.setBefore(func(_ int, id string, _ int) error {
				if id == orgID(12) {
					e.src.remove(id)
				}
				return nil
			})
			report, err := e.run(reconcile.OrganizationConfig{})
			if err != nil || !report.Complete || report.Memberships.Listed != 58 {
				t.Fatalf("%+v, %v", orgCounts(report), err)
			}
			ctx := context.Background()
			if !stored {
				if report.Organizations.Created != 30 || report.Memberships.Created != 58 {
					t.Fatalf("%+v", orgCounts(report))
				}
				if _, err := e.store.Member(ctx, issuer, orgID(12), "user_00000"); !errors.Is(err, orgs.ErrNotMember) {
					t.Fatalf("a membership of the organization gone: %v", err)
				}
				e.src.setBefore(nil)
				if report, err = e.run(reconcile.OrganizationConfig{}); err != nil {
					t.Fatal(err)
				}
			}
			if report.Organizations.Deleted != 1 {
				t.Fatalf("%+v", orgCounts(report))
			}
			if _, err := e.store.Organization(ctx, issuer, orgID(12)); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("organization 12: %v", err)
			}
			e.src.setBefore(nil)
			e.requireLive()
		})
	}
}

// TestOrganizationsOneRunAtATime: a second run of the issuer, in another
// replica or this one, gets ErrRunning; the users' reconcile of the same
// issuer runs beside it (a lease of its own).
func TestOrganizationsOneRunAtATime(t *testing.T) {
	store := memstore.New()
	e := newOrgEnv(t, store)
	e.src.fill(0, 30, some, 1)
	inside, release := make(chan struct{}), make(chan struct{})
	e.src.setBefore(func(_ int, id string, offset int) error {
		if id == "" && offset == 9 { // the second page
			close(inside)
			<-release
		}
		return nil
	})
	a := e.reconciler(reconcile.OrganizationConfig{PageSize: 10, Holder: "replica-a"})
	done := make(chan error)
	go func() {
		_, err := a.Run(context.Background())
		done <- err
	}()
	<-inside
	if _, err := e.reconciler(reconcile.OrganizationConfig{Holder: "replica-b"}).Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
		t.Fatalf("replica b: %v, want ErrRunning", err)
	}
	if _, err := a.Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
		t.Fatalf("replica a again: %v, want ErrRunning", err)
	}
	syncer, err := usersync.New(usersync.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	w := person("ada", "Ada", 1_700_000_000_000)
	w.Issuer = issuer
	users, err := reconcile.New(reconcile.Config{Syncer: syncer, Source: &directory{issuer: issuer, users: []usersync.Write{w}}, Holder: "replica-b", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if report, err := users.Run(context.Background()); err != nil || report.Created != 1 {
		t.Fatalf("the users' reconcile beside it: %+v, %v", counts(report), err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.src.setBefore(nil)
	if _, err := e.reconciler(reconcile.OrganizationConfig{Holder: "replica-b"}).Run(context.Background()); err != nil {
		t.Fatalf("replica b after a: %v", err)
	}
	e.requireLive()
}

// TestOrganizationsRunEverySweepsOncePerInterval: a complete sweep holds
// back every replica's turns for the interval.
func TestOrganizationsRunEverySweepsOncePerInterval(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 20, some, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var complete atomic.Bool
	a := e.reconciler(reconcile.OrganizationConfig{Holder: "replica-a", OnProgress: func(r reconcile.OrganizationReport) {
		if r.Complete && !r.Finished.IsZero() {
			complete.Store(true)
			stop()
		}
	}})
	if err := a.RunEvery(ctx, time.Hour); !errors.Is(err, context.Canceled) || !complete.Load() {
		t.Fatalf("replica a: %v, complete %v", err, complete.Load())
	}
	before := e.src.count()
	for _, holder := range []string{"replica-b", "replica-a"} {
		logs, log := telemetrytest.NewLogs()
		r := e.reconciler(reconcile.OrganizationConfig{Holder: holder, Logger: log})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.RunEvery(ctx, time.Hour) }()
		waitFor(t, "the skipped turn", func() bool { return logs.Count("DEBUG reconcile organizations: skipped: a replica completed one") > 0 })
		cancel()
		<-done
	}
	if n := e.src.count() - before; n != 0 {
		t.Fatalf("a replica swept again within the interval: %d requests", n)
	}
	if err := a.RunEvery(context.Background(), 0); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("interval 0: %v", err)
	}
}

// TestOrganizationsTelemetry: runs by result with the entity, items by
// entity and outcome, a span per run with a span per batch below it.
func TestOrganizationsTelemetry(t *testing.T) {
	rec := telemetrytest.New(t)
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 25, func(int) int { return 4 }, 1)
	cfg := reconcile.OrganizationConfig{PageSize: 10, MeterProvider: rec.MeterProvider, TracerProvider: rec.TracerProvider}
	if _, err := e.run(cfg); err != nil {
		t.Fatal(err)
	}
	e.src.remove(orgID(1))
	e.src.removeMember(orgID(2), "user_00000")
	e.src.put(org(3, 2))
	if _, err := e.run(cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.store.AcquireLease(context.Background(), "usersync:reconcile-orgs:"+issuer, "someone else", 1<<40); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := e.run(cfg); !errors.Is(err, reconcile.ErrRunning) {
		t.Fatalf("a run beside another: %v", err)
	}
	on, entity := attribute.String("issuer", issuer), attribute.String("entity", "organization")
	for result, want := range map[string]int64{"complete": 2, "skipped": 1, "failed": 0} {
		if got := rec.Sum(t, "usersync.reconcile.runs", on, entity, attribute.String("result", result)); got != want {
			t.Errorf("usersync.reconcile.runs{result=%q} = %d, want %d", result, got, want)
		}
	}
	for _, c := range []struct {
		entity, outcome string
		want            int64
	}{
		{"organization", "created", 25}, {"organization", "unchanged", 23}, {"organization", "updated", 1}, {"organization", "deleted", 1},
		{"membership", "created", 100}, {"membership", "unchanged", 24*4 - 1}, {"membership", "deleted", 1},
	} {
		if got := rec.Sum(t, "usersync.reconcile.items", on, attribute.String("entity", c.entity), attribute.String("outcome", c.outcome)); got != c.want {
			t.Errorf("usersync.reconcile.items{entity=%q,outcome=%q} = %d, want %d", c.entity, c.outcome, got, c.want)
		}
	}
	runs, pages := rec.Spans("usersync.reconcile.organizations"), rec.Spans("usersync.reconcile.page")
	// The first run: 3 pages of organizations (10, 9 and 6 new ones: pages
	// overlap by one) with 40, 36 and 24 members, in batches of 10: 4, 4
	// and 3. The second (24 organizations): 3 pages, with 39, 36 and 20
	// members: 4, 4 and 2 batches.
	if len(runs) != 3 || len(pages) != 3+11+3+10 {
		t.Fatalf("%d run spans and %d page spans", len(runs), len(pages))
	}
	if pages[0].Parent().SpanID() != runs[0].SpanContext().SpanID() {
		t.Error("a page's span is not a child of its run's")
	}
	if v, ok := telemetrytest.Attr(pages[0], "entity"); !ok || v.AsString() != "organization" {
		t.Errorf("a page's entity: %v", v)
	}
}

func TestNewOrganizationsRejectsBadConfig(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	for _, cfg := range []reconcile.OrganizationConfig{
		{},
		{Syncer: e.syncer},
		{Syncer: e.syncer, Source: newOrgDirectory("")},
		{Syncer: e.syncer, Source: e.src, PageSize: 501},
		{Syncer: e.syncer, Source: e.src, PageSize: 1},
		{Syncer: e.syncer, Source: e.src, PageSize: -1},
		{Syncer: e.syncer, Source: e.src, MaxDeleteShare: 1.5},
		{Syncer: e.syncer, Source: e.src, LeaseTTL: time.Nanosecond},
		{Syncer: e.syncer, Source: e.src, Holder: strings.Repeat("h", 256)},
	} {
		if _, err := reconcile.NewOrganizations(cfg); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("NewOrganizations(%+v) = %v", cfg, err)
		}
	}
	syncer, err := orgs.New(orgs.Config{Store: orgsOnly{memstore.New()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.NewOrganizations(reconcile.OrganizationConfig{Syncer: syncer, Source: e.src}); !errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), "lease.Store") {
		t.Fatalf("a store without leases: %v", err)
	}
}

// orgsOnly is a store of organizations that keeps no leases.
type orgsOnly struct{ orgs.Store }

// TestOrganizationsAListLargerThanMemoryIsListedTwice: a run that keeps
// less in memory than the provider lists lists it again to write it, and
// the guards and deletions still hold.
func TestOrganizationsAListLargerThanMemoryIsListedTwice(t *testing.T) {
	e := newOrgEnv(t, memstore.New())
	e.src.fill(0, 120, func(int) int { return 3 }, 1)
	if _, err := e.run(reconcile.OrganizationConfig{PageSize: 50}); err != nil {
		t.Fatal(err)
	}
	e.src.fill(0, 120, func(int) int { return 3 }, 2)
	e.src.remove(orgID(7))
	e.src.removeMember(orgID(8), "user_00002")
	r := e.reconciler(reconcile.OrganizationConfig{PageSize: 50})
	r.SetKeep(20 << 10) // fewer than listed
	orgPages := 0
	e.src.setBefore(func(_ int, id string, _ int) error {
		if id == "" {
			orgPages++
		}
		return nil
	})
	report, err := r.Run(context.Background())
	if err != nil || report.Organizations.Updated != 119 || report.Organizations.Deleted != 1 || report.Memberships.Deleted != 1 || report.Memberships.Updated != 119*3-1 {
		t.Fatalf("%+v, %v", orgCounts(report), err)
	}
	if orgPages != 2*3 { // 119 organizations in pages of 50 overlapping by one: 3, twice
		t.Fatalf("%d pages of organizations listed, want 6: listed, then listed again", orgPages)
	}
	e.src.setBefore(nil)
	e.requireLive()

	// A refusal still writes nothing.
	for i := range 30 {
		e.src.remove(orgID(20 + i))
	}
	r.SetKeep(20 << 10)
	if report, err := r.Run(context.Background()); !errors.Is(err, reconcile.ErrMassDelete) || report.Organizations.Updated+report.Organizations.Unchanged != 0 {
		t.Fatalf("%+v, %v", orgCounts(report), err)
	}
}
