package clerk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
)

var _ reconcile.OrganizationSource = (*clerk.OrganizationList)(nil)

// newOrgList returns the organization list of api and its user list,
// which share their requests, recording their waits instead of sleeping
// them.
func newOrgList(t *testing.T, api *clerktest.API) (*clerk.OrganizationList, *clerk.UserList, *[]time.Duration) {
	t.Helper()
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer, SecretKey: api.SecretKey, APIURL: api.URL, PublicKeyPEM: api.PublicKeyPEM()})
	if err != nil {
		t.Fatal(err)
	}
	ol, err := p.OrganizationList()
	if err != nil {
		t.Fatal(err)
	}
	ul, err := p.UserList()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	waits := new([]time.Duration)
	clerk.SetSleep(ul, func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		*waits = append(*waits, d)
		return ctx.Err()
	})
	return ol, ul, waits
}

// putOrgs lists n organizations of m members each, created a second
// apart in reverse order of their IDs' numbers, so that the list's order
// is not the IDs'.
func putOrgs(t *testing.T, api *clerktest.API, n, m int) {
	t.Helper()
	t0 := time.UnixMilli(1_700_000_000_000)
	for i := range n {
		o := clerkfake.Organization{
			ID: fmt.Sprintf("org_%03d", n-1-i), Name: fmt.Sprintf("Org %d", i), Slug: fmt.Sprintf("org-%d", i),
			PublicMetadata: json.RawMessage(`{"tier":1}`), CreatedAt: t0.Add(time.Duration(i) * time.Second),
			UpdatedAt: t0.Add(time.Duration(i)*time.Second + time.Minute),
		}
		if err := api.Fake.PutOrganization(o); err != nil {
			t.Fatal(err)
		}
		for j := range m {
			if err := api.Fake.PutMembership(clerkfake.Membership{
				OrganizationID: o.ID, UserID: fmt.Sprintf("user_%03d", m-1-j), Role: "org:member",
				CreatedAt: t0.Add(time.Duration(j) * time.Millisecond), UpdatedAt: t0.Add(time.Hour),
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestOrganizationListPagesOldestFirst(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	putOrgs(t, api, 23, 0)
	l, _, _ := newOrgList(t, api)
	if l.Issuer() != clerkIssuer {
		t.Fatalf("Issuer = %q", l.Issuer())
	}
	var got []orgs.Organization
	for offset := 0; ; offset += 10 {
		page, err := l.Organizations(ctx, offset, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 10 {
			break
		}
	}
	if len(got) != 23 {
		t.Fatalf("listed %d organizations", len(got))
	}
	for i, o := range got {
		if want := fmt.Sprintf("org_%03d", 22-i); o.ID != want || o.Issuer != clerkIssuer || o.Name != fmt.Sprintf("Org %d", i) ||
			string(o.Metadata) != `{"tier":1}` || o.Version != usersync.Version(1_700_000_000_000+int64(i)*1000+60_000) || !o.UpdatedAt.IsZero() {
			t.Fatalf("organization %d: %+v", i, o)
		}
	}
	if page, err := l.Organizations(ctx, 100, 10); err != nil || len(page) != 0 {
		t.Fatalf("past the end: %v, %v", page, err)
	}
	for _, bad := range [][2]int{{0, 0}, {0, 501}, {-1, 10}} {
		if _, err := l.Organizations(ctx, bad[0], bad[1]); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("offset %d limit %d: %v", bad[0], bad[1], err)
		}
		if _, err := l.Memberships(ctx, "org_000", bad[0], bad[1]); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("memberships, offset %d limit %d: %v", bad[0], bad[1], err)
		}
	}
}

func TestOrganizationListMemberships(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	putOrgs(t, api, 2, 7)
	l, _, _ := newOrgList(t, api)
	var got []orgs.Membership
	for offset := 0; ; offset += 3 {
		page, err := l.Memberships(ctx, "org_001", offset, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 3 {
			break
		}
	}
	if len(got) != 7 {
		t.Fatalf("listed %d memberships", len(got))
	}
	for i, m := range got {
		if want := fmt.Sprintf("user_%03d", 6-i); m.UserSubject != want || m.OrganizationID != "org_001" || m.Issuer != clerkIssuer ||
			m.Role != "org:member" || !strings.HasPrefix(m.ID, "orgmem_") || m.Version != usersync.Version(1_700_003_600_000) {
			t.Fatalf("membership %d: %+v", i, m)
		}
	}
	if _, err := l.Memberships(ctx, "org_gone", 0, 10); !errors.Is(err, orgs.ErrNotFound) {
		t.Fatalf("memberships of a missing organization: %v", err)
	}

	m, err := l.LookupMembership(ctx, "org_001", "user_004")
	if err != nil || m == nil || m.UserSubject != "user_004" || m.OrganizationID != "org_001" {
		t.Fatalf("LookupMembership = %+v, %v", m, err)
	}
	for _, tc := range [][2]string{{"org_001", "user_gone"}, {"org_gone", "user_004"}, {"org_001", "user_004&user_id=user_001"}} {
		if m, err := l.LookupMembership(ctx, tc[0], tc[1]); err != nil || m != nil {
			t.Fatalf("LookupMembership(%q, %q) = %+v, %v; want nil", tc[0], tc[1], m, err)
		}
	}
	if _, err := l.LookupMembership(ctx, "org_001", ""); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("LookupMembership without a user: %v", err)
	}
}

func TestOrganizationListLookup(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	putOrgs(t, api, 3, 0)
	l, _, _ := newOrgList(t, api)
	o, err := l.LookupOrganization(ctx, "org_001")
	if err != nil || o == nil || o.ID != "org_001" || o.Slug != "org-1" || o.Name != "Org 1" {
		t.Fatalf("LookupOrganization = %+v, %v", o, err)
	}
	for _, id := range []string{"org_gone", "../users", "a/b", "%2e%2e"} {
		if o, err := l.LookupOrganization(ctx, id); err != nil || o != nil {
			t.Fatalf("LookupOrganization(%q) = %+v, %v; want nil", id, o, err)
		}
	}
	// Clerk's endpoint takes a slug too: the organization of another ID
	// is not the one asked for.
	if o, err := l.LookupOrganization(ctx, "org-1"); !errors.Is(err, clerk.ErrAPI) || o != nil {
		t.Fatalf("LookupOrganization of a slug = %+v, %v", o, err)
	}
	if _, err := l.LookupOrganization(ctx, ""); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("LookupOrganization without an ID: %v", err)
	}
}

// The organization list retries as the user list does, and shares its
// pause: a 429 of one holds the other's requests.
func TestOrganizationListRetries(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		status   int
		n        int
		retry    time.Duration
		wantErr  bool
		requests int
	}{
		{"429 waits Retry-After", 429, 2, 3 * time.Second, false, 3},
		{"429 without Retry-After waits a second", 429, 1, -1, false, 2},
		{"5xx backs off", 503, 2, 0, false, 3},
		{"5xx six times gives up", 500, 6, 0, true, 6},
		{"429 longer than a minute gives up", 429, 1, 2 * time.Minute, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := clerktest.NewAPI(t)
			putOrgs(t, api, 3, 2)
			l, _, waits := newOrgList(t, api)
			if _, err := l.LookupOrganization(ctx, "org_000"); err != nil { // checks the instance first, once
				t.Fatal(err)
			}
			for _, call := range []func() error{
				func() error { _, err := l.Organizations(ctx, 0, 10); return err },
				func() error { _, err := l.Memberships(ctx, "org_000", 0, 10); return err },
			} {
				*waits = nil
				before := api.Requests()
				api.Fail(tc.n, tc.status, tc.retry)
				err := call()
				if tc.wantErr != errors.Is(err, clerk.ErrAPI) || (!tc.wantErr && err != nil) {
					t.Fatalf("err = %v, want an error: %v", err, tc.wantErr)
				}
				if errors.Is(err, orgs.ErrNotFound) {
					t.Fatalf("a failure is no proof of absence: %v", err)
				}
				if got := api.Requests() - before; got != tc.requests {
					t.Fatalf("%d requests, want %d", got, tc.requests)
				}
				if len(*waits) != tc.requests-1 {
					t.Fatalf("waits %v for %d requests", *waits, tc.requests)
				}
				for _, d := range *waits {
					if tc.status == 429 && tc.retry > 0 && d != tc.retry || tc.status == 429 && tc.retry < 0 && d != time.Second {
						t.Fatalf("wait %v, want Retry-After %v", d, tc.retry)
					}
				}
			}
		})
	}
}

func TestOrganizationListSharesThePause(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	putOrgs(t, api, 1, 1)
	ol, ul, _ := newOrgList(t, api)
	if _, err := ul.Count(ctx); err != nil { // checks the instance, for both lists
		t.Fatal(err)
	}
	sleeps, release := make(chan time.Duration, 3), make(chan struct{})
	clerk.SetSleep(ul, func(ctx context.Context, d time.Duration) error {
		sleeps <- d
		<-release
		return nil
	})
	api.Fail(1, http.StatusTooManyRequests, 30*time.Second)
	errs := make(chan error, 2)
	go func() { _, err := ul.Count(ctx); errs <- err }()
	if d := <-sleeps; d != 30*time.Second {
		t.Fatalf("the 429's wait: %v", d)
	}
	before := api.Requests()
	go func() { _, err := ol.Organizations(ctx, 0, 10); errs <- err }()
	if d := <-sleeps; d <= 0 || d > 30*time.Second {
		t.Fatalf("the organizations' request during the pause waited %v", d)
	}
	if n := api.Requests() - before; n != 0 {
		t.Fatalf("%d requests during the pause", n)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestOrganizationListNeedsASecretKey(t *testing.T) {
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.OrganizationList(); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	api := clerktest.NewAPI(t)
	l, _, _ := newOrgList(t, api)
	for _, s := range []string{fmt.Sprint(l), fmt.Sprintf("%+v", l), fmt.Sprintf("%#v", l)} {
		if strings.Contains(s, api.SecretKey) || !strings.Contains(s, clerkIssuer) {
			t.Fatalf("prints %s", s)
		}
	}
}

// FuzzDecodeOrganizations decodes arbitrary answers to GET /organizations
// and GET /organizations/{id}/memberships: a page is an error wrapping
// ErrAPI or items of the issuer with their keys, and nothing panics.
func FuzzDecodeOrganizations(f *testing.F) {
	api := clerktest.NewAPI(f)
	if err := api.Fake.PutOrganization(clerkfake.Organization{ID: "org_1", Name: "Acme", Slug: "acme", ImageURL: "https://img.clerk.com/x",
		PublicMetadata: json.RawMessage(`{"plan":"pro"}`), UpdatedAt: time.UnixMilli(1_700_000_000_000)}); err != nil {
		f.Fatal(err)
	}
	if err := api.Fake.PutMembership(clerkfake.Membership{OrganizationID: "org_1", UserID: "user_1", Role: "org:admin",
		Permissions: []string{"org:sys_memberships:manage"}}); err != nil {
		f.Fatal(err)
	}
	for _, path := range []string{"/organizations?limit=10", "/organizations/org_1/memberships?limit=10"} {
		r, err := http.NewRequest("GET", api.URL+path, nil)
		if err != nil {
			f.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+api.SecretKey)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			f.Fatal(err)
		}
		real, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		f.Add(real)
	}
	for _, b := range []string{`{"data":[],"total_count":0}`, `{"data":[{}]}`, `{"data":null}`, `[]`, `{"data":[null]}`,
		`{"data":[{"id":"org_1","updated_at":-1}]}`, `{"data":[{"id":"orgmem_1","organization":{"id":"org_2"},"public_user_data":{"user_id":"u"},"updated_at":1}]}`,
		`{"data":[{"id":"orgmem_1","public_user_data":{"user_id":"u"},"permissions":[1],"updated_at":1}]}`, `{"data":[{"id":"org_1","deleted":true,"updated_at":1}]}`, `nul`} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if page, err := clerk.DecodeOrganizations(clerkIssuer, body); err != nil {
			if !errors.Is(err, clerk.ErrAPI) {
				t.Fatalf("error without ErrAPI: %v", err)
			}
		} else {
			for _, o := range page {
				if o.Issuer != clerkIssuer || o.ID == "" || o.Version < 1 {
					t.Fatalf("organization %+v", o)
				}
			}
		}
		if page, err := clerk.DecodeMemberships(clerkIssuer, "org_1", body); err != nil {
			if !errors.Is(err, clerk.ErrAPI) {
				t.Fatalf("error without ErrAPI: %v", err)
			}
		} else {
			for _, m := range page {
				if m.Issuer != clerkIssuer || m.OrganizationID != "org_1" || m.UserSubject == "" || m.ID == "" || m.Version < 1 {
					t.Fatalf("membership %+v", m)
				}
			}
		}
	})
}

// FuzzOrganizationWebhookBody signs arbitrary bodies, organization and
// membership events among the seeds, and delivers them to a handler that
// applies them: 200 or 400, never a 5xx or a panic.
func FuzzOrganizationWebhookBody(f *testing.F) {
	for _, name := range []string{"organization.created", "organization.updated", "organization.deleted",
		"organizationMembership.created", "organizationMembership.updated", "organizationMembership.deleted", "organizationInvitation.accepted"} {
		f.Add(event(f, name))
	}
	for _, b := range []string{
		`{"type":"organization.created","data":{"id":"org_1","updated_at":1,"public_metadata":[1,2]}}`,
		`{"type":"organizationMembership.created","data":{"id":"m","organization":{"id":"o","updated_at":1},"public_user_data":{"user_id":"u"},"permissions":[""],"updated_at":1}}`,
		`{"type":"organizationMembership.deleted","data":{"id":"m","organization":{"id":"o"},"public_user_data":{"user_id":"u"}}}`,
		`{"type":"organization.deleted","data":{"id":"` + strings.Repeat("o", 200) + `"}}`,
	} {
		f.Add([]byte(b))
	}
	sender := clerktest.NewWebhookSender(f)
	h := newOrgWebhook(f, memstore.New(), sender, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		sender := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
		w := serve(h, sender.Request("/", body))
		if w.Code != 200 && w.Code != 400 && w.Code != 413 {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
}
