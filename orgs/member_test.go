package orgs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/usersynctest"
)

var quiet = slog.New(slog.DiscardHandler)

// app is an organization's route behind RequireUser and RequireMember,
// over memstore, with a fake issuer's tokens.
type app struct {
	issuer *usersynctest.Issuer
	users  *usersync.Syncer
	orgs   *orgs.Syncer
	store  orgs.Store
	mux    *http.ServeMux
}

func newApp(t *testing.T, store interface {
	usersync.Store
	orgs.Store
}) *app {
	t.Helper()
	iss := usersynctest.NewIssuer(t)
	v, err := jwtverify.New(context.Background(), jwtverify.Config{Issuers: []jwtverify.Issuer{{URL: iss.URL}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	users, err := usersync.New(usersync.Config{Store: store, Extractor: v, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	og, err := orgs.New(orgs.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{issuer: iss, users: users, orgs: og, store: store, mux: http.NewServeMux()}
	orgID := func(r *http.Request) string { return r.PathValue("orgId") }
	show := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, ok := orgs.MemberFromContext(r.Context())
		if !ok {
			http.Error(w, "no member in the context", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %s %s", m.Organization.Name, m.Membership.UserSubject, m.Membership.Role)
	})
	a.mux.Handle("GET /orgs/{orgId}", users.RequireUser(og.RequireMember(orgID)(show)))
	a.mux.Handle("GET /orgs/{orgId}/admin", users.RequireUser(og.RequireMember(orgID, "admin")(show)))
	a.mux.Handle("GET /bare/{orgId}", og.RequireMember(orgID)(show)) // not behind RequireUser
	return a
}

func (a *app) get(t *testing.T, path, sub string, claims map[string]any) (int, string) {
	t.Helper()
	c := map[string]any{"sub": sub}
	for k, v := range claims {
		c[k] = v
	}
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Authorization", "Bearer "+a.issuer.Token(c))
	w := httptest.NewRecorder()
	a.mux.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Body)
	return w.Code, strings.TrimSpace(string(body))
}

var t0 = time.UnixMilli(1_700_000_000_000)

func (a *app) org(t *testing.T, id, name string) {
	t.Helper()
	if _, _, err := a.orgs.UpsertOrganization(context.Background(), orgs.Organization{Issuer: a.issuer.URL, ID: id, Name: name, Version: 1, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
}

func (a *app) member(id, orgID, sub, role string) orgs.Membership {
	return orgs.Membership{Issuer: a.issuer.URL, OrganizationID: orgID, UserSubject: sub, ID: id, Role: role, Version: 1, CreatedAt: t0}
}

func TestRequireMember(t *testing.T) {
	ctx := context.Background()
	a := newApp(t, memstore.New())
	a.org(t, "org_1", "Acme")
	a.org(t, "org_gone", "Gone")
	for _, m := range []orgs.Membership{a.member("orgmem_1", "org_1", "alice", "org:member"), a.member("orgmem_2", "org_1", "bob", "org:admin"),
		a.member("orgmem_3", "org_gone", "alice", "org:admin"), a.member("orgmem_4", "org_1", "carol", "org:member")} {
		if _, _, err := a.orgs.UpsertMembership(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.orgs.DeleteOrganization(ctx, a.issuer.URL, "org_gone"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.orgs.DeleteMembership(ctx, a.member("orgmem_4", "org_1", "carol", "")); err != nil {
		t.Fatal(err)
	}
	// Carol's token still names org_1 as active (Clerk's v2 claim): the
	// store decides.
	carolsClaim := map[string]any{"o": map[string]any{"id": "org_1", "slg": "acme", "rol": "member"}}
	for _, c := range []struct {
		name, path, sub string
		claims          map[string]any
		status          int
		body            string
	}{
		{"a member", "/orgs/org_1", "alice", nil, 200, "Acme alice org:member"},
		{"an admin on an admin route", "/orgs/org_1/admin", "bob", nil, 200, "Acme bob org:admin"},
		{"a member on an admin route", "/orgs/org_1/admin", "alice", nil, 403, "Forbidden"},
		{"a signed-in non-member", "/orgs/org_1", "dave", nil, 403, "Forbidden"},
		{"a removed member whose token names the organization", "/orgs/org_1", "carol", carolsClaim, 403, "Forbidden"},
		{"an unknown organization", "/orgs/org_nope", "alice", nil, 404, "Not Found"},
		{"a deleted organization", "/orgs/org_gone", "alice", nil, 404, "Not Found"},
		{"an organization ID no write could store", "/orgs/" + strings.Repeat("x", 300), "alice", nil, 404, "Not Found"},
		{"no user in the context", "/bare/org_1", "alice", nil, 401, "Unauthorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := a.get(t, c.path, c.sub, c.claims)
			if status != c.status || body != c.body {
				t.Fatalf("GET %s as %s = %d %q, want %d %q", c.path, c.sub, status, body, c.status, c.body)
			}
		})
	}
	// Removing alice refuses her next request at once.
	if _, _, err := a.orgs.DeleteMembership(ctx, a.member("orgmem_1", "org_1", "alice", "")); err != nil {
		t.Fatal(err)
	}
	if status, _ := a.get(t, "/orgs/org_1", "alice", nil); status != 403 {
		t.Fatalf("a member removed a moment ago: %d, want 403", status)
	}
}

// failing is a store whose membership check fails.
type failing struct {
	*memstore.Store
}

var errDown = errors.New("the database is down")

func (failing) Member(context.Context, string, string, string) (orgs.Member, error) {
	return orgs.Member{}, errDown
}

func TestRequireMemberAnswers500WhenTheStoreFails(t *testing.T) {
	a := newApp(t, failing{memstore.New()})
	var got error
	a.orgs, _ = orgs.New(orgs.Config{Store: a.store, Logger: quiet, ErrorHandler: func(w http.ResponseWriter, r *http.Request, status int, err error) {
		got = err
		http.Error(w, "custom", status)
	}})
	a.mux = http.NewServeMux()
	a.mux.Handle("GET /orgs/{orgId}", a.users.RequireUser(a.orgs.RequireMember(func(r *http.Request) string { return r.PathValue("orgId") })(http.NotFoundHandler())))
	if status, body := a.get(t, "/orgs/org_1", "alice", nil); status != 500 || body != "custom" || !errors.Is(got, errDown) {
		t.Fatalf("a failing store: %d %q, err %v; want 500 through the ErrorHandler", status, body, got)
	}
}

func TestHasRole(t *testing.T) {
	for _, c := range []struct {
		role  string
		roles []string
		want  bool
	}{
		{"org:admin", nil, true},
		{"org:admin", []string{"admin"}, true},
		{"org:admin", []string{"org:admin"}, true},
		{"admin", []string{"org:admin"}, true},
		{"org:member", []string{"admin", "billing"}, false},
		{"org:admin", []string{"Admin"}, false},
		{"", []string{"admin"}, false},
	} {
		m := orgs.Membership{Role: c.role}
		if got := m.HasRole(c.roles...); got != c.want {
			t.Errorf("%q.HasRole(%q) = %v, want %v", c.role, c.roles, got, c.want)
		}
	}
}

func TestSyncerRefusesVersionsFromTheFuture(t *testing.T) {
	now := t0
	og, err := orgs.New(orgs.Config{Store: memstore.New(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	future := usersync.Version(now.Add(11 * time.Minute).UnixMilli())
	_, _, err = og.UpsertOrganization(context.Background(), orgs.Organization{Issuer: "https://i.test", ID: "org_1", Version: future})
	if !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("a version 11 minutes ahead: %v, want ErrInvalid", err)
	}
	o, _, err := og.UpsertOrganization(context.Background(), orgs.Organization{Issuer: "https://i.test/", ID: "org_1", Version: usersync.Version(now.UnixMilli())})
	if err != nil || o.Issuer != "https://i.test" || !o.UpdatedAt.Equal(now) {
		t.Fatalf("a write now: %+v, %v; want the canonical issuer and UpdatedAt from the clock", o, err)
	}
	if _, err := orgs.New(orgs.Config{}); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("New without a store: %v", err)
	}
}

func TestOnChange(t *testing.T) {
	var got []usersync.Change
	s := memstore.New()
	og, _ := orgs.New(orgs.Config{Store: s, OnChange: func(_ context.Context, c usersync.Change) { got = append(got, c) }})
	ctx := context.Background()
	og.UpsertOrganization(ctx, orgs.Organization{Issuer: "https://i.test", ID: "org_1", Version: 1})
	og.UpsertOrganization(ctx, orgs.Organization{Issuer: "https://i.test", ID: "org_1", Version: 1}) // stale: none
	og.UpsertMemberships(ctx, []orgs.Membership{{Issuer: "https://i.test", OrganizationID: "org_1", UserSubject: "u", ID: "orgmem_1", Version: 1}})
	og.DeleteOrganization(ctx, "https://i.test", "org_1")
	want := []string{"organization created org_1 ", "membership created org_1 u", "organization deleted org_1 "}
	var have []string
	for _, c := range got {
		have = append(have, fmt.Sprintf("%s %s %s %s", c.Entity, c.Outcome, c.OrganizationID, c.Subject))
	}
	if fmt.Sprint(have) != fmt.Sprint(want) {
		t.Fatalf("OnChange got %q, want %q", have, want)
	}
}
