package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/reconcile"
)

const issuer = "https://clerk.example.com"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// t0 is when the fake instance's first user was created.
var t0 = time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Millisecond)

// apiUser is the i-th user of a fake instance, at revision rev.
func apiUser(i, rev int) clerktest.User {
	return clerktest.User{
		ID: fmt.Sprintf("user_%05d", i), FirstName: clerktest.Str(fmt.Sprintf("Given%d", i)), LastName: clerktest.Str(fmt.Sprintf("Rev%d", rev)),
		Email: fmt.Sprintf("u%d@example.com", i), ExternalID: fmt.Sprintf("legacy-%d", i),
		CreatedAt: t0.Add(time.Duration(i) * time.Second),
		UpdatedAt: t0.Add(time.Duration(i)*time.Second + time.Duration(rev)*time.Minute),
	}
}

func apiUsers(from, to, rev int) []clerktest.User {
	var us []clerktest.User
	for i := from; i < to; i++ {
		us = append(us, apiUser(i, rev))
	}
	return us
}

// leasing is a store of users with leases: what a Reconciler runs on.
type leasing interface {
	usersync.Store
	lease.Store
}

// env is a fake Clerk instance and an app's store.
type env struct {
	t       *testing.T
	api     *clerktest.API
	list    *clerk.UserList
	store   leasing
	syncer  *usersync.Syncer
	changes atomic.Int64
}

func newEnv(t *testing.T, store leasing) *env {
	t.Helper()
	e := &env{t: t, api: clerktest.NewAPI(t), store: store}
	p, err := clerk.New(clerk.Config{Issuer: issuer, SecretKey: e.api.SecretKey, APIURL: e.api.URL, PublicKeyPEM: e.api.PublicKeyPEM()})
	if err != nil {
		t.Fatal(err)
	}
	if e.list, err = p.UserList(); err != nil {
		t.Fatal(err)
	}
	e.syncer, err = usersync.New(usersync.Config{
		Store: store, Logger: quiet,
		OnChange: func(context.Context, usersync.Change) { e.changes.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// onPage calls f before each page of GET /users the API serves, with its
// number (1 for the first) and offset.
func (e *env) onPage(f func(n, offset int)) {
	var mu sync.Mutex
	n := 0
	e.api.OnPage(func(offset int) {
		mu.Lock()
		defer mu.Unlock()
		n++
		f(n, offset)
	})
}

func (e *env) reconciler(cfg reconcile.Config) *reconcile.Reconciler {
	e.t.Helper()
	cfg.Syncer, cfg.Source = e.syncer, e.list
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := reconcile.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) run(cfg reconcile.Config) (reconcile.Report, error) {
	e.t.Helper()
	return e.reconciler(cfg).Run(context.Background())
}

// stored returns the stored user of subject, or the error of the lookup.
func (e *env) stored(subject string) (usersync.User, error) {
	return e.store.GetByTokenIdentifier(context.Background(), usersync.TokenIdentifier(issuer, subject))
}

// requireMatches checks that the store holds exactly the given API users,
// live, at their revision.
func (e *env) requireLive(users []clerktest.User) {
	e.t.Helper()
	for _, u := range users {
		got, err := e.stored(u.ID)
		if err != nil {
			e.t.Fatalf("%s: %v", u.ID, err)
		}
		if got.FamilyName != *u.LastName || got.Version != usersync.Version(u.UpdatedAt.UnixMilli()) {
			e.t.Fatalf("%s stored as %q at version %d, want %q at %d", u.ID, got.FamilyName, got.Version, *u.LastName, u.UpdatedAt.UnixMilli())
		}
	}
}

func (e *env) liveCount() int {
	e.t.Helper()
	n, err := e.store.Count(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func TestBackfillThenNothingChanges(t *testing.T) {
	e := newEnv(t, memstore.New())
	users := apiUsers(0, 1234, 1)
	e.api.Put(users...)
	var pages []reconcile.Report
	report, err := e.run(reconcile.Config{PageSize: 100, OnProgress: func(r reconcile.Report) { pages = append(pages, r) }})
	if err != nil {
		t.Fatal(err)
	}
	want := reconcile.Report{Issuer: issuer, Total: 1234, Listed: 1234, Created: 1234, Complete: true}
	if got := counts(report); !reflect.DeepEqual(got, counts(want)) {
		t.Fatalf("report %+v, want %+v", got, counts(want))
	}
	if report.Started.IsZero() || report.Finished.Before(report.Started) {
		t.Fatalf("times %v %v", report.Started, report.Finished)
	}
	// 13 pages and the final report; listed grows page by page.
	if len(pages) != 14 || pages[0].Listed != 100 || pages[12].Listed != 1234 {
		t.Fatalf("%d progress reports: first %+v", len(pages), pages[0])
	}
	e.requireLive(users)
	if n := e.liveCount(); n != 1234 {
		t.Fatalf("%d live users", n)
	}
	// Mapped as a webhook maps them: the old system's ID links the rows.
	u, err := e.store.GetByExternalID(context.Background(), issuer, "legacy-77")
	if err != nil || u.Subject != "user_00077" || u.GivenName != "Given77" || u.Email != "u77@example.com" || !u.EmailVerified {
		t.Fatalf("by external ID: %+v, %v", u, err)
	}
	if e.changes.Load() != 1234 {
		t.Fatalf("%d changes seen by OnChange", e.changes.Load())
	}

	// Twice changes nothing.
	report, err = e.run(reconcile.Config{PageSize: 100})
	if err != nil || report.Unchanged != 1234 || report.Created+report.Updated+report.Deleted != 0 || !report.Complete {
		t.Fatalf("second run %+v, %v", counts(report), err)
	}
	if e.changes.Load() != 1234 {
		t.Fatalf("a second run changed %d users", e.changes.Load()-1234)
	}
}

// counts is report without its times and refusals, to compare.
func counts(r reconcile.Report) reconcile.Report {
	r.Started, r.Finished, r.Refused = time.Time{}, time.Time{}, nil
	return r
}

func TestNeverRollsBackANewerWebhook(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 10, 1)...)
	// A webhook already delivered revision 5 of user 3: the API's page,
	// listed before that, still holds revision 1.
	newer := apiUser(3, 5)
	ev, err := mustProvider(t).Decode(context.Background(), clerktest.UserEvent("user.updated", newer))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.syncer.Upsert(context.Background(), *ev.Write); err != nil {
		t.Fatal(err)
	}
	report, err := e.run(reconcile.Config{})
	if err != nil || report.Created != 9 || report.Unchanged != 1 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	e.requireLive([]clerktest.User{newer})
	// And an update the webhooks missed is healed.
	missed := apiUser(4, 2)
	e.api.Put(missed)
	report, err = e.run(reconcile.Config{})
	if err != nil || report.Updated != 1 || report.Unchanged != 9 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	e.requireLive([]clerktest.User{newer, missed})
}

func mustProvider(t *testing.T) *clerk.Provider {
	p, err := clerk.New(clerk.Config{Issuer: issuer})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeletesWhatTheProviderNoLongerHas(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 200, 1)...)
	if _, err := e.run(reconcile.Config{}); err != nil {
		t.Fatal(err)
	}
	// A user of another issuer (another instance, or a token-only OIDC
	// issuer) is never the reconcile's to delete.
	other := usersync.Write{Issuer: "https://other.example.com", Subject: "user_00001", Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Other"}}
	if _, _, err := e.syncer.Upsert(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	gone := []string{"user_00001", "user_00050", "user_00199"}
	e.api.Remove(gone...)
	report, err := e.run(reconcile.Config{})
	if err != nil || report.Deleted != 3 || report.Unchanged != 197 || !report.Complete {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	for _, id := range gone {
		if _, err := e.stored(id); !errors.Is(err, usersync.ErrDeleted) {
			t.Fatalf("%s: %v, want ErrDeleted", id, err)
		}
		// Final: a token still valid cannot store them again.
		w := usersync.Write{Issuer: issuer, Subject: id, Version: usersync.Version(time.Now().UnixMilli()), Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Back"}}
		if _, _, err := e.syncer.Upsert(context.Background(), w); !errors.Is(err, usersync.ErrDeleted) {
			t.Fatalf("%s stored again: %v", id, err)
		}
	}
	if _, err := e.store.GetByTokenIdentifier(context.Background(), usersync.TokenIdentifier(other.Issuer, other.Subject)); err != nil {
		t.Fatalf("the other issuer's user: %v", err)
	}
	if n := e.liveCount(); n != 198 {
		t.Fatalf("%d live users, want 197 + 1", n)
	}
}

func TestMassDeleteGuard(t *testing.T) {
	for _, tc := range []struct {
		name     string
		live     int
		removed  int
		cfg      reconcile.Config
		refused  error
		wantLive int
	}{
		{"10 users, whatever the share", 50, 10, reconcile.Config{}, nil, 40},
		{"10% of the users, however many", 200, 20, reconcile.Config{}, nil, 180},
		{"more than 10 and more than 10%", 100, 11, reconcile.Config{}, reconcile.ErrMassDelete, 100},
		{"every user", 300, 300, reconcile.Config{}, reconcile.ErrForeignList, 300},
		{"every user, under the count", 8, 8, reconcile.Config{}, reconcile.ErrForeignList, 8},
		{"all but a tenth, allowed any share", 100, 91, reconcile.Config{MaxDeleteShare: 1}, reconcile.ErrForeignList, 100},
		{"every user, overridden", 30, 30, reconcile.Config{AllowMassDelete: true}, nil, 0},
		{"overridden", 100, 60, reconcile.Config{AllowMassDelete: true}, nil, 40},
		{"a tighter count", 100, 3, reconcile.Config{MaxDeleteCount: 2, MaxDeleteShare: 0.01}, reconcile.ErrMassDelete, 100},
		{"a looser share", 100, 40, reconcile.Config{MaxDeleteShare: 0.5}, nil, 60},
		{"no count allowance", 200, 11, reconcile.Config{MaxDeleteCount: -1, MaxDeleteShare: 0.05}, reconcile.ErrMassDelete, 200},
		{"no allowance at all", 200, 1, reconcile.Config{MaxDeleteCount: -1, MaxDeleteShare: -1}, reconcile.ErrMassDelete, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, memstore.New())
			e.api.Put(apiUsers(0, tc.live, 1)...)
			if _, err := e.run(reconcile.Config{}); err != nil {
				t.Fatal(err)
			}
			var removed []string
			for i := range tc.removed {
				removed = append(removed, fmt.Sprintf("user_%05d", i*tc.live/tc.removed))
			}
			e.api.Remove(removed...)
			// A rename in the same run: a refused run writes nothing.
			kept := apiUser(tc.live-1, 2)
			if tc.removed < tc.live {
				e.api.Put(kept)
			}
			var logs strings.Builder
			tc.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			report, err := e.run(tc.cfg)
			switch {
			case tc.refused == reconcile.ErrMassDelete:
				if !errors.Is(err, reconcile.ErrMassDelete) || len(report.Refused) != tc.removed || report.Deleted != 0 {
					t.Fatalf("%+v (refused %d), %v; want ErrMassDelete", counts(report), len(report.Refused), err)
				}
				u, _ := e.stored(removed[0])
				if !strings.Contains(logs.String(), "would_delete="+fmt.Sprint(tc.removed)) || !strings.Contains(logs.String(), u.ID) {
					t.Fatalf("the refusal is not logged with what it would delete:\n%s", logs.String())
				}
			case tc.refused != nil:
				if !errors.Is(err, tc.refused) || len(report.Refused) != 0 || report.Deleted != 0 || !strings.Contains(err.Error(), "another instance") {
					t.Fatalf("%+v, %v; want %v", counts(report), err, tc.refused)
				}
				if !strings.Contains(logs.String(), "another instance") {
					t.Fatalf("the refusal is not logged:\n%s", logs.String())
				}
			case err != nil || report.Deleted != tc.removed:
				t.Fatalf("%+v, %v", counts(report), err)
			}
			if n := e.liveCount(); n != tc.wantLive {
				t.Fatalf("%d live users, want %d", n, tc.wantLive)
			}
			if tc.removed < tc.live {
				want := map[bool]string{true: "Rev1", false: "Rev2"}[tc.refused != nil]
				if u, err := e.stored(kept.ID); err != nil || u.FamilyName != want {
					t.Fatalf("the renamed user: %+v, %v; want %s", u.Profile, err, want)
				}
			}
		})
	}
}

// TestAnotherInstancesListIsRefused: the store holds an instance's users,
// the Source lists another instance's (its secret key): the run imports
// none of them and deletes none of the real ones, whatever the guard's
// settings, and says why.
func TestAnotherInstancesListIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name           string
		real, foreign  int
		cfg            reconcile.Config
		keepInMemoryUs int
	}{
		{"100 real users, 1,000 foreign", 100, 1000, reconcile.Config{}, 0},
		{"listed again to write", 100, 1000, reconcile.Config{}, 50 << 10},
		{"30 real users, any share allowed", 30, 300, reconcile.Config{MaxDeleteShare: 1, MaxDeleteCount: 1000}, 0},
		{"3 real users", 3, 300, reconcile.Config{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, memstore.New())
			e.api.Put(apiUsers(0, tc.real, 1)...)
			if _, err := e.run(reconcile.Config{}); err != nil {
				t.Fatal(err)
			}
			// The same fake instance now lists other users only: as a
			// Source with another instance's key (and its issuer) would.
			var ids []string
			for _, u := range apiUsers(0, tc.real, 1) {
				ids = append(ids, u.ID)
			}
			e.api.Remove(ids...)
			e.api.Put(apiUsers(100_000, 100_000+tc.foreign, 1)...)
			r := e.reconciler(tc.cfg)
			if tc.keepInMemoryUs > 0 {
				r.SetKeep(tc.keepInMemoryUs)
			}
			report, err := r.Run(context.Background())
			if !errors.Is(err, reconcile.ErrForeignList) || report.Created+report.Updated+report.Deleted != 0 {
				t.Fatalf("%+v, %v; want ErrForeignList and nothing written", counts(report), err)
			}
			if n := e.liveCount(); n != tc.real {
				t.Fatalf("%d live users, want the %d real ones", n, tc.real)
			}
			e.requireLive(apiUsers(0, tc.real, 1))
		})
	}
}

// TestAListLargerThanMemoryIsListedTwice: a run that keeps fewer users in
// memory than the provider lists lists them again to write them, and
// applies them all.
func TestAListLargerThanMemoryIsListedTwice(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 120, 1)...)
	if _, err := e.run(reconcile.Config{PageSize: 50}); err != nil {
		t.Fatal(err)
	}
	e.api.Put(apiUsers(0, 120, 2)...)
	e.api.Remove("user_00007")
	r := e.reconciler(reconcile.Config{PageSize: 50})
	r.SetKeep(60 << 10) // about 60 users of 1 KiB: fewer than listed
	pages := 0
	e.onPage(func(n, _ int) { pages = n })
	report, err := r.Run(context.Background())
	if err != nil || report.Updated != 119 || report.Deleted != 1 || report.Listed != 119 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	if pages != 2*3 { // 119 users in pages of 50 overlapping by one: 3, twice
		t.Fatalf("%d pages listed, want 6: listed, then listed again", pages)
	}
	e.requireLive(apiUsers(8, 120, 2))
}

func TestPartialSweepDeletesNothing(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 30, 1)...)
	if _, err := e.run(reconcile.Config{PageSize: 10}); err != nil {
		t.Fatal(err)
	}
	e.api.Remove("user_00002", "user_00025")
	e.api.Put(apiUser(5, 2), apiUser(27, 2))
	// The third page fails for good (a 503 would be retried first).
	e.onPage(func(n, _ int) {
		if n == 2 {
			e.api.Fail(1, 403, 0)
		}
	})
	report, err := e.run(reconcile.Config{PageSize: 10})
	if !errors.Is(err, clerk.ErrAPI) || report.Complete || report.Deleted != 0 {
		t.Fatalf("%+v, %v; want an incomplete sweep", counts(report), err)
	}
	// Into a store with users, a run lists every page before it writes
	// one: an incomplete list could be another instance's.
	if report.Updated != 0 || report.Listed != 0 {
		t.Fatalf("a page was written from an incomplete list: %+v", counts(report))
	}
	if u, err := e.stored("user_00005"); err != nil || u.FamilyName != "Rev1" {
		t.Fatalf("user_00005 = %+v, %v; want it as it was", u.Profile, err)
	}
	if n := e.liveCount(); n != 30 {
		t.Fatalf("%d live users after a partial sweep, want 30", n)
	}
	e.api.OnPage(nil)
	report, err = e.run(reconcile.Config{PageSize: 10})
	if err != nil || report.Deleted != 2 || report.Updated != 2 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
}

// failingStore fails UpsertBatch for the batches fail picks.
type failingStore struct {
	leasing
	fail func(ws []usersync.Write) bool
}

func (s failingStore) UpsertBatch(ctx context.Context, ws []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	if s.fail(ws) {
		return nil, nil, errors.New("store down")
	}
	return s.leasing.UpsertBatch(ctx, ws)
}

func TestAPageTheStoreFailsDoesNotLoseTheRest(t *testing.T) {
	broken := true
	store := failingStore{leasing: memstore.New(), fail: func(ws []usersync.Write) bool { return broken && len(ws) > 0 && ws[0].Subject == "user_00010" }}
	e := newEnv(t, store)
	e.api.Put(apiUsers(0, 40, 1)...)
	report, err := e.run(reconcile.Config{PageSize: 10})
	if err == nil || !strings.Contains(err.Error(), "store down") || report.Complete || report.Created != 31 || report.Listed != 40 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	if _, err := e.stored("user_00035"); err != nil {
		t.Fatalf("the pages after the failed one: %v", err)
	}
	// Three failing pages in a row stop the sweep: the store is down.
	store.fail = func([]usersync.Write) bool { return true }
	e = newEnv(t, store)
	e.api.Put(apiUsers(0, 100, 1)...)
	report, err = e.run(reconcile.Config{PageSize: 10})
	if err == nil || report.Listed != 28 {
		t.Fatalf("%+v, %v; want a stop after 3 pages (10 + 9 + 9 users: pages overlap by one)", counts(report), err)
	}
}

func TestSkipsUsersThatCannotBeStored(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 20, 1)...)
	long := apiUser(20, 1)
	long.ID = "user_" + strings.Repeat("x", 300) // longer than any store keeps
	e.api.Put(long)
	report, err := e.run(reconcile.Config{})
	if err != nil || report.Skipped != 1 || report.Created != 20 || report.Unchanged != 0 || !report.Complete {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	// A skipped user still counts as listed: deletions go on.
	e.api.Remove("user_00003")
	report, err = e.run(reconcile.Config{})
	if err != nil || report.Skipped != 1 || report.Deleted != 1 || report.Unchanged != 19 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
}

// refusingStore skips, as a database that refuses a value does, the
// writes of the subjects in refuse, and applies the others.
type refusingStore struct {
	leasing
	refuse map[string]bool
}

func (s refusingStore) UpsertBatch(ctx context.Context, ws []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	var keep []usersync.Write
	var at []int
	for i, w := range ws {
		if !s.refuse[w.Subject] {
			keep, at = append(keep, w), append(at, i)
		}
	}
	applied, outs, err := s.leasing.UpsertBatch(ctx, keep)
	if err != nil {
		return nil, nil, err
	}
	users, outcomes := make([]usersync.User, len(ws)), make([]usersync.Outcome, len(ws))
	for k, i := range at {
		users[i], outcomes[i] = applied[k], outs[k]
	}
	var skipped []error
	for i, w := range ws {
		if s.refuse[w.Subject] {
			skipped = append(skipped, &usersync.WriteError{Index: i, Err: fmt.Errorf("%w: the database refused a value (error 22003)", usersync.ErrInvalid)})
		}
	}
	return users, outcomes, errors.Join(skipped...)
}

// A user whose value the database refuses is skipped and counted, and the
// run still completes: one such user must not leave every reconcile
// incomplete.
func TestAUserTheDatabaseRefusesIsSkipped(t *testing.T) {
	e := newEnv(t, refusingStore{leasing: memstore.New(), refuse: map[string]bool{"user_00007": true}})
	e.api.Put(apiUsers(0, 20, 1)...)
	for range 2 {
		report, err := e.run(reconcile.Config{})
		if err != nil || report.Skipped != 1 || !report.Complete || report.Created+report.Unchanged != 19 {
			t.Fatalf("%+v, %v", counts(report), err)
		}
	}
	if _, err := e.stored("user_00007"); !errors.Is(err, usersync.ErrNotFound) {
		t.Fatalf("the refused user: %v", err)
	}
	e.requireLive(apiUsers(8, 20, 1))
}

// TestAListThatChangesUnderTheSweep deletes, creates and updates users
// between pages: offset paging then skips users (deletions before the
// offset shift the rest left) and repeats none here; nothing the provider
// has may be lost, nothing it has may be deleted.
func TestAListThatChangesUnderTheSweep(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 300, 1)...)
	if _, err := e.run(reconcile.Config{}); err != nil {
		t.Fatal(err)
	}
	e.api.Put(apiUsers(300, 1000, 1)...) // created since the last reconcile

	deletedEarly := []string{}
	next := 1000
	backdated := apiUser(6000, 1)
	backdated.CreatedAt = apiUser(350, 1).CreatedAt.Add(time.Millisecond) // an import with a past created_at
	e.onPage(func(n, _ int) {
		switch n {
		case 2:
			// 7 users of the page already listed are deleted: the list
			// moves left under the sweep, by 7 users that were stored.
			for i := range 7 {
				id := fmt.Sprintf("user_%05d", i*10)
				e.api.Remove(id)
				deletedEarly = append(deletedEarly, id)
			}
			// Users sign up: they come last.
			for range 5 {
				e.api.Put(apiUser(next, 1))
				next++
			}
		case 4:
			// Again, where the users moved left are not stored yet.
			for i := range 4 {
				id := fmt.Sprintf("user_%05d", 200+i)
				e.api.Remove(id)
				deletedEarly = append(deletedEarly, id)
			}
			e.api.Put(backdated)                     // moves the list right: a repeat
			e.api.Remove("user_00500", "user_00501") // not listed yet: gone before their page
			e.api.Put(apiUser(450, 3))               // updated before its page
			e.api.Put(apiUser(150, 3))               // updated after its page: a webhook brings it
		}
	})
	// A user who signs up after the last page was listed, and whom a
	// webhook stores during the sweep: newer than the sweep, not deleted.
	late := apiUser(5000, 1)
	late.CreatedAt = time.Now()
	report, err := e.run(reconcile.Config{PageSize: 100, OnProgress: func(r reconcile.Report) {
		if r.Listed >= 1000 && r.Finished.IsZero() {
			if _, _, err := e.syncer.Upsert(context.Background(), mustWrite(t, late)); err != nil {
				t.Error(err)
			}
		}
	}})
	if err != nil || !report.Complete {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	// Listed once each: every user but the two deleted before their page,
	// and the backdated one.
	if report.Deleted != 0 || report.Listed != next-2+1 {
		t.Fatalf("deleted %d, listed %d; want 0, %d", report.Deleted, report.Listed, next-1)
	}
	// Every user the provider has is stored, at its revision (150's
	// update is the webhooks' to bring: it is at revision 1 or 3).
	var have []clerktest.User
	for i := range next {
		if i == 500 || i == 501 || i == 150 || slicesContains(deletedEarly, fmt.Sprintf("user_%05d", i)) {
			continue
		}
		u := apiUser(i, 1)
		if i == 450 {
			u = apiUser(i, 3)
		}
		have = append(have, u)
	}
	have = append(have, backdated)
	e.requireLive(have)
	// The users deleted during the sweep after their page was listed stay
	// until the next run (or their user.deleted webhook).
	for _, id := range deletedEarly {
		if _, err := e.stored(id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	e.api.OnPage(nil)
	e.api.Put(late)
	report, err = e.run(reconcile.Config{PageSize: 100})
	if err != nil || report.Deleted != len(deletedEarly) {
		t.Fatalf("second run: %+v, %v", counts(report), err)
	}
	for _, id := range deletedEarly {
		if _, err := e.stored(id); !errors.Is(err, usersync.ErrDeleted) {
			t.Fatalf("%s: %v", id, err)
		}
	}
	e.requireLive(append(have, late))
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func mustWrite(t *testing.T, u clerktest.User) usersync.Write {
	ev, err := mustProvider(t).Decode(context.Background(), clerktest.UserEvent("user.created", u))
	if err != nil {
		t.Fatal(err)
	}
	return *ev.Write
}

// TestASkippedUserStoredByAClockBehind: a user created during the sweep by
// a replica whose clock is behind looks older than the sweep: the lookup
// before deleting keeps it.
// TestAFirstImportWhileUsersAreDeleted: users deleted before the offset
// move the list left under the sweep; the users moved past it are not
// stored yet, so only listing them again saves them.
func TestAFirstImportWhileUsersAreDeleted(t *testing.T) {
	for _, removed := range []int{1, 3, 99, 100, 150} {
		t.Run(fmt.Sprint(removed), func(t *testing.T) {
			e := newEnv(t, memstore.New())
			e.api.Put(apiUsers(0, 300, 1)...)
			var gone []string
			for i := range removed {
				gone = append(gone, fmt.Sprintf("user_%05d", i))
			}
			e.onPage(func(n, _ int) {
				if n == 2 {
					e.api.Remove(gone...)
				}
			})
			report, err := e.run(reconcile.Config{PageSize: 100})
			if err != nil || !report.Complete || report.Deleted != 0 {
				t.Fatalf("%+v, %v", counts(report), err)
			}
			e.requireLive(apiUsers(removed, 300, 1))
			// Users of the first page were listed before they went; the
			// others removed were never listed.
			if want := 300 - max(0, removed-100); report.Created != want || report.Listed != want {
				t.Fatalf("%+v: want %d users listed once", counts(report), want)
			}
		})
	}
}

// TestAUserStoredDuringTheRunIsNotDeleted: a user the provider creates
// after its page was listed, and that a webhook stores during the run (by
// a clock behind the reconciler's), was not live before the run: never a
// candidate for deletion.
func TestAUserStoredDuringTheRunIsNotDeleted(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 50, 1)...)
	late := apiUser(9000, 1)
	late.CreatedAt = time.Now()
	report, err := e.run(reconcile.Config{OnProgress: func(r reconcile.Report) {
		if r.Finished.IsZero() {
			e.api.Put(late)
			w := mustWrite(t, late)
			w.At = time.Now().Add(-time.Hour)
			if _, _, err := e.syncer.Upsert(context.Background(), w); err != nil {
				t.Error(err)
			}
		}
	}})
	// Stored during the run, it was no candidate for a deletion.
	if err != nil || report.Deleted != 0 || report.Created != 50 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	e.requireLive([]clerktest.User{late})
}

func TestRateLimitIsHonoured(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 20, 1)...)
	e.onPage(func(n, _ int) {
		if n == 2 {
			e.api.Fail(1, 429, time.Second)
		}
	})
	start := time.Now()
	report, err := e.run(reconcile.Config{PageSize: 10})
	if err != nil || report.Created != 20 || !report.Complete {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("took %v: Retry-After: 1 not honoured", took)
	}
}

func TestCancelStopsTheSweep(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 50, 1)...)
	if _, err := e.run(reconcile.Config{}); err != nil {
		t.Fatal(err)
	}
	e.api.Remove("user_00001")
	ctx, cancel := context.WithCancel(context.Background())
	r := e.reconciler(reconcile.Config{PageSize: 10, OnProgress: func(reconcile.Report) { cancel() }})
	report, err := r.Run(ctx)
	if !errors.Is(err, context.Canceled) || report.Complete || report.Deleted != 0 || report.Listed != 10 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
	// The lease was released: another replica runs at once.
	report, err = e.reconciler(reconcile.Config{Holder: "other"}).Run(context.Background())
	if err != nil || report.Deleted != 1 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
}

func TestOneRunAtATime(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 30, 1)...)
	inside, release := make(chan struct{}), make(chan struct{})
	e.onPage(func(n, _ int) {
		if n == 2 {
			close(inside)
			<-release
		}
	})
	a := e.reconciler(reconcile.Config{PageSize: 10, Holder: "replica-a"})
	done := make(chan error)
	go func() {
		_, err := a.Run(context.Background())
		done <- err
	}()
	<-inside
	// Another replica, and the same one again, find it running.
	if _, err := e.reconciler(reconcile.Config{Holder: "replica-b"}).Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
		t.Fatalf("replica b: %v, want ErrRunning", err)
	}
	if _, err := a.Run(context.Background()); !errors.Is(err, reconcile.ErrRunning) {
		t.Fatalf("replica a again: %v, want ErrRunning", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.api.OnPage(nil)
	if _, err := e.reconciler(reconcile.Config{Holder: "replica-b"}).Run(context.Background()); err != nil {
		t.Fatalf("replica b after a: %v", err)
	}
}

// lostLease is a store on which every renewal finds the lease taken over.
type lostLease struct{ leasing }

func (lostLease) RenewLease(context.Context, string, string, time.Duration, int64) (bool, error) {
	return false, nil
}

// holdPage makes the API hold its second page of users until the test
// ends: a run that asks for it ends only when its context does (or, if
// that never happens, it gets the page after 30 seconds, to fail).
func (e *env) holdPage() {
	ended := make(chan struct{})
	e.t.Cleanup(func() { close(ended) }) // before the API's server closes
	e.onPage(func(n, _ int) {
		if n == 2 {
			select {
			case <-ended:
			case <-time.After(30 * time.Second):
			}
		}
	})
}

func TestALostLeaseStopsTheRun(t *testing.T) {
	e := newEnv(t, lostLease{memstore.New()})
	e.api.Put(apiUsers(0, 30, 1)...)
	// Only the loss of the lease, at its first renewal, ends the run.
	e.holdPage()
	report, err := e.run(reconcile.Config{PageSize: 10, LeaseTTL: 150 * time.Millisecond})
	if !errors.Is(err, reconcile.ErrRunning) || report.Complete {
		t.Fatalf("%+v, %v; want ErrRunning", counts(report), err)
	}
}

// hungRenewal is a store on which renewing a lease hangs until its context
// ends.
type hungRenewal struct{ leasing }

func (hungRenewal) RenewLease(ctx context.Context, _, _ string, _ time.Duration, _ int64) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}

func TestAHungRenewalStopsTheRunBeforeTheLeaseExpires(t *testing.T) {
	e := newEnv(t, hungRenewal{memstore.New()})
	e.api.Put(apiUsers(0, 30, 1)...)
	// Only the end of the lease, a fifth of its ttl before it would
	// expire, ends the run. (No second holder: a short ttl is safe.)
	e.holdPage()
	report, err := e.run(reconcile.Config{PageSize: 10, LeaseTTL: 300 * time.Millisecond})
	if !errors.Is(err, reconcile.ErrRunning) || report.Complete {
		t.Fatalf("%+v, %v; want ErrRunning", counts(report), err)
	}
	if !strings.Contains(err.Error(), "could not be renewed") {
		t.Fatalf("err = %v", err)
	}
}

func TestALongIssuerGetsALeaseName(t *testing.T) {
	store := memstore.New()
	syncer, _ := usersync.New(usersync.Config{Store: store, Logger: quiet})
	iss := "https://" + strings.Repeat("a", 300) + ".example.com"
	w := person("ada", "Ada", 1_700_000_000_000)
	w.Issuer = iss
	r, err := reconcile.New(reconcile.Config{Syncer: syncer, Source: &directory{issuer: iss, users: []usersync.Write{w}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if report, err := r.Run(context.Background()); err != nil || report.Created != 1 {
		t.Fatalf("%+v, %v", counts(report), err)
	}
}

// turns runs the RunEvery, every interval, of the Reconciler that
// newReconciler returns with log and onProgress, until done, polled, is
// true of the sweeps it finished (their last reports) and the turns it
// skipped (as it logged them); then it returns those.
func turns(t *testing.T, newReconciler func(log *slog.Logger, onProgress func(reconcile.Report)) *reconcile.Reconciler,
	interval time.Duration, done func(swept []reconcile.Report, skipped int) bool) ([]reconcile.Report, int) {
	t.Helper()
	logs, log := telemetrytest.NewLogs()
	var mu sync.Mutex
	var swept []reconcile.Report
	r := newReconciler(log, func(r reconcile.Report) {
		if !r.Finished.IsZero() {
			mu.Lock()
			defer mu.Unlock()
			swept = append(swept, r)
		}
	})
	skipped := func() int { return logs.Count("DEBUG reconcile: skipped") + logs.Count("INFO reconcile: skipped") }
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- r.RunEvery(ctx, interval) }()
	defer func() { // also when waitFor fails the test: RunEvery does not outlive it
		cancel()
		<-ended
	}()
	waitFor(t, "the turns", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done(swept, skipped())
	})
	cancel()
	err := <-ended
	ended <- err // for the deferred drain
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RunEvery: %v, want the context's error", err)
	}
	return swept, skipped()
}

// turns runs the RunEvery of a Reconciler of cfg, as turns does.
func (e *env) turns(cfg reconcile.Config, interval time.Duration, done func(swept []reconcile.Report, skipped int) bool) ([]reconcile.Report, int) {
	e.t.Helper()
	return turns(e.t, func(log *slog.Logger, onProgress func(reconcile.Report)) *reconcile.Reconciler {
		cfg.Logger, cfg.OnProgress = log, onProgress
		return e.reconciler(cfg)
	}, interval, done)
}

// aTurn and aSweep are done functions of turns: until the first turn is
// over, swept or skipped; until a sweep.
func aTurn(swept []reconcile.Report, skipped int) bool { return len(swept)+skipped > 0 }
func aSweep(swept []reconcile.Report, _ int) bool      { return len(swept) > 0 }

func TestRunEverySweepsOncePerIntervalAcrossReplicas(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 20, 1)...)
	// Replica a sweeps at once, and its complete sweep holds back every
	// replica's turns for its interval, counted from its start.
	const interval = 1500 * time.Millisecond
	swept, _ := e.turns(reconcile.Config{Holder: "replica-a"}, interval, aSweep)
	if !swept[0].Complete {
		t.Fatalf("replica a: %+v; want a complete sweep", counts(swept[0]))
	}
	started := swept[0].Started
	before := e.api.Requests()
	// Replica b's first turn, and replica a's again, are skipped.
	for _, holder := range []string{"replica-b", "replica-a"} {
		swept, _ := e.turns(reconcile.Config{Holder: holder}, time.Hour, aTurn)
		if n := e.api.Requests() - before; len(swept) > 0 || n != 0 {
			if took := time.Since(started); took >= interval {
				// The interval is over: a sweep was due. Not a failure,
				// but nothing checked (and that sweep holds back the
				// turns for an hour).
				t.Skipf("%s swept (%d requests) %v after a's sweep started, past the interval: this machine is too slow to check that the turn is skipped", holder, n, took)
			}
			t.Fatalf("%s swept again within the interval of a's complete sweep: %d requests", holder, n)
		}
	}
	// Once that interval has passed, a turn sweeps: replica b's, which
	// asks every 10 ms, not before.
	var mu sync.Mutex
	var firstPage time.Time
	e.onPage(func(n, _ int) {
		if n == 1 {
			mu.Lock()
			defer mu.Unlock()
			firstPage = time.Now()
		}
	})
	swept, skipped := e.turns(reconcile.Config{Holder: "replica-b"}, 10*time.Millisecond, aSweep)
	mu.Lock()
	defer mu.Unlock()
	if !swept[0].Complete || firstPage.IsZero() {
		t.Fatalf("replica b: %+v, listed at %v; want a complete sweep", counts(swept[0]), firstPage)
	}
	if at := firstPage.Sub(started); at < interval {
		t.Fatalf("replica b swept %v after a's sweep started, within its interval of %v", at, interval)
	}
	t.Logf("replica b skipped %d turns before it swept", skipped)
	if err := e.reconciler(reconcile.Config{}).RunEvery(context.Background(), 0); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("interval 0: %v", err)
	}
}

// TestRunEveryAfterAnIncompleteSweep: an incomplete sweep holds back no
// one: the next turn of any replica sweeps.
func TestRunEveryAfterAnIncompleteSweep(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 30, 1)...)
	e.onPage(func(n, _ int) {
		if n == 2 {
			e.api.Fail(1, 403, 0)
		}
	})
	swept, _ := e.turns(reconcile.Config{Holder: "replica-a", PageSize: 10}, time.Hour, aSweep)
	if last := swept[0]; last.Complete {
		t.Fatalf("replica a: %+v; want an incomplete sweep", counts(last))
	}
	e.api.OnPage(nil)
	swept, skipped := e.turns(reconcile.Config{Holder: "replica-b"}, time.Hour, aTurn)
	if len(swept) != 1 || skipped != 0 || !swept[0].Complete || swept[0].Created+swept[0].Unchanged != 30 {
		t.Fatalf("replica b: swept %+v, skipped %d turns; want a complete sweep at once", swept, skipped)
	}
}

// TestTheSmallestPagesProgress: pages of two users, overlapping by one,
// sweep a list in as many requests as it has users, and end.
func TestTheSmallestPagesProgress(t *testing.T) {
	e := newEnv(t, memstore.New())
	e.api.Put(apiUsers(0, 40, 1)...)
	for rev := 1; rev <= 2; rev++ { // into an empty store, then a full one
		e.api.Put(apiUsers(0, 40, rev)...)
		before := e.api.Requests()
		report, err := e.run(reconcile.Config{PageSize: 2})
		if err != nil || report.Listed != 40 {
			t.Fatalf("%+v, %v", counts(report), err)
		}
		// A count and 40 pages, twice over a store with users (listed
		// before written, the list kept in memory: here all of it).
		if n := e.api.Requests() - before; n > 45 {
			t.Fatalf("%d requests for 40 users in pages of 2", n)
		}
	}
	e.requireLive(apiUsers(0, 40, 2))
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t, memstore.New())
	for _, cfg := range []reconcile.Config{
		{},
		{Syncer: e.syncer},
		{Syncer: e.syncer, Source: e.list, PageSize: 501},
		{Syncer: e.syncer, Source: e.list, PageSize: 1}, // pages overlap by one: it would never move on
		{Syncer: e.syncer, Source: e.list, PageSize: -1},
		{Syncer: e.syncer, Source: e.list, MaxDeleteShare: 1.5},
		{Syncer: e.syncer, Source: e.list, LeaseTTL: time.Nanosecond},
		{Syncer: e.syncer, Source: e.list, Holder: strings.Repeat("h", 256)},
	} {
		if _, err := reconcile.New(cfg); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("New(%+v) = %v", cfg, err)
		}
	}
	// A store without leases: reconcile says what it lacks.
	syncer, err := usersync.New(usersync.Config{Store: usersOnly{memstore.New()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.New(reconcile.Config{Syncer: syncer, Source: e.list}); !errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), "lease.Store") {
		t.Fatalf("a store without leases: %v", err)
	}
}

// usersOnly is a store of users that keeps no leases.
type usersOnly struct{ usersync.Store }
