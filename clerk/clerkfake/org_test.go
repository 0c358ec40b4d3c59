package clerkfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
)

// apiGet GETs a Backend API path of the fake with its secret key.
func apiGet(t *testing.T, fake *clerkfake.Instance, path string) (int, []byte) {
	t.Helper()
	r, err := http.NewRequest("GET", fake.APIURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+fake.SecretKey())
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

type listAnswer struct {
	Data []struct {
		ID             string `json:"id"`
		Slug           string `json:"slug"`
		Role           string `json:"role"`
		CreatedAt      int64  `json:"created_at"`
		Organization   struct{ ID, Name string }
		PublicUserData struct {
			UserID     string  `json:"user_id"`
			Identifier string  `json:"identifier"`
			FirstName  *string `json:"first_name"`
		} `json:"public_user_data"`
	} `json:"data"`
	TotalCount *int `json:"total_count"`
}

func TestOrganizationEndpoints(t *testing.T) {
	fake := serveFake(t, clerkfake.Config{})
	t0 := time.UnixMilli(1_700_000_000_000)
	for i := range 5 {
		if err := fake.PutOrganization(clerkfake.Organization{ID: fmt.Sprintf("org_%d", 4-i), Name: "Org", Slug: fmt.Sprintf("slug-%d", 4-i),
			CreatedAt: t0.Add(time.Duration(i) * time.Second), UpdatedAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	fake.Put(clerkfake.User{ID: "user_ada", FirstName: clerkfake.Str("Ada"), Email: "ada@example.com", UpdatedAt: t0})
	for i, u := range []string{"user_ada", "user_bob", "user_cy"} {
		if err := fake.PutMembership(clerkfake.Membership{OrganizationID: "org_4", UserID: u, Role: "org:admin", CreatedAt: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.Organizations(); n != 5 {
		t.Fatalf("%d organizations", n)
	}
	ids := func(a listAnswer) string {
		var s []string
		for _, d := range a.Data {
			s = append(s, d.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		path   string
		status int
		want   string // the IDs listed, or a part of the body
		total  int
	}{
		{"/organizations?limit=2&offset=1&order_by=%2Bcreated_at", 200, "org_3,org_2", 5},
		{"/organizations?limit=2", 200, "org_0,org_1", 5},
		{"/organizations?offset=9", 200, "", 5},
		{"/organizations?limit=0", 422, "form_param_value_invalid", 0},
		{"/organizations?order_by=name", 422, "form_param_value_invalid", 0},
		{"/organizations/org_4/memberships?order_by=%2Bcreated_at&limit=2&offset=1", 200, "", 3},
		{"/organizations/org_4/memberships?user_id=user_bob", 200, "", 1},
		{"/organizations/org_4/memberships?user_id=user_bob&user_id=user_ada", 200, "", 2},
		{"/organizations/org_0/memberships", 200, "", 0},
		{"/organizations/org_9/memberships", 404, "resource_not_found", 0},
		{"/organizations/org_9", 404, "resource_not_found", 0},
		{"/organizations/org_1/nope", 404, "resource_not_found", 0},
	} {
		t.Run(tc.path, func(t *testing.T) {
			status, b := apiGet(t, fake, tc.path)
			if status != tc.status {
				t.Fatalf("%d %s", status, b)
			}
			if status != 200 {
				if !strings.Contains(string(b), tc.want) {
					t.Fatalf("%s, want %s", b, tc.want)
				}
				return
			}
			var a listAnswer
			if err := json.Unmarshal(b, &a); err != nil || a.TotalCount == nil || *a.TotalCount != tc.total {
				t.Fatalf("%s: %v", b, err)
			}
			if !strings.Contains(tc.path, "memberships") && ids(a) != tc.want {
				t.Fatalf("listed %s, want %s", ids(a), tc.want)
			}
		})
	}
	// Memberships: oldest first, nested organization, public user data
	// from the listed user.
	_, b := apiGet(t, fake, "/organizations/org_4/memberships?order_by=%2Bcreated_at")
	var a listAnswer
	json.Unmarshal(b, &a)
	if len(a.Data) != 3 || a.Data[0].PublicUserData.UserID != "user_ada" || a.Data[0].PublicUserData.Identifier != "ada@example.com" ||
		a.Data[0].PublicUserData.FirstName == nil || *a.Data[0].PublicUserData.FirstName != "Ada" || a.Data[0].Organization.ID != "org_4" ||
		a.Data[0].Role != "org:admin" || !strings.HasPrefix(a.Data[0].ID, "orgmem_") || a.Data[2].PublicUserData.UserID != "user_cy" {
		t.Fatalf("memberships: %s", b)
	}
	// By ID and by slug, as Clerk's GET /organizations/{id}.
	for _, key := range []string{"org_2", "slug-2"} {
		if status, b := apiGet(t, fake, "/organizations/"+key); status != 200 || !strings.Contains(string(b), `"id":"org_2"`) {
			t.Fatalf("GET /organizations/%s: %d %s", key, status, b)
		}
	}
	// 429s as the users endpoints have them.
	fake.Fail(1, http.StatusTooManyRequests, 3*time.Second)
	r, _ := http.NewRequest("GET", fake.APIURL()+"/organizations", nil)
	r.Header.Set("Authorization", "Bearer "+fake.SecretKey())
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("%d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if status, _ := post(t, fake.APIURL()+"/organizations", ""); status != 401 {
		t.Fatalf("without the secret key: %d", status)
	}

	// Removing an organization removes its memberships.
	fake.RemoveOrganization("org_4", "org_unknown")
	if status, _ := apiGet(t, fake, "/organizations/org_4/memberships"); status != 404 || fake.Organizations() != 4 {
		t.Fatalf("after the removal: %d, %d organizations", status, fake.Organizations())
	}
	fake.RemoveMembership("org_3", "user_nobody") // unknown: ignored

	for _, bad := range []error{
		fake.PutOrganization(clerkfake.Organization{ID: "org/1"}),
		fake.PutOrganization(clerkfake.Organization{}),
		fake.PutMembership(clerkfake.Membership{OrganizationID: "org_gone", UserID: "user_ada"}),
		fake.PutMembership(clerkfake.Membership{OrganizationID: "org_0"}),
		fake.PutMembership(clerkfake.Membership{OrganizationID: "org_0", UserID: "user_ada", ID: "orgmem/1"}),
	} {
		if bad == nil {
			t.Fatal("an invalid organization or membership was put")
		}
	}
}

// TestOrganizationWebhooksReachTheStore sends the fake's organization and
// membership webhooks to an App over memstore; changes made without a
// webhook reach nothing, as missed webhooks, until a reconcile.
func TestOrganizationWebhooksReachTheStore(t *testing.T) {
	ctx := t.Context()
	store := memstore.New()
	var handler http.Handler
	ready := make(chan struct{})
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		handler.ServeHTTP(w, r)
	}))
	defer hooks.Close()
	fake := serveFake(t, clerkfake.Config{WebhookURL: hooks.URL})
	app, err := clerk.Wire(ctx, store, clerk.SetupConfig{Config: clerk.Config{Issuer: fake.Issuer(), WebhookSecrets: []string{fake.WebhookSecret()}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if app.Orgs == nil {
		t.Fatal("no App.Orgs over memstore")
	}
	handler = app.Webhook
	close(ready)
	iss := fake.Issuer()
	send := func(status int, err error) {
		t.Helper()
		if err != nil || status != 200 {
			t.Fatalf("sent: %d, %v", status, err)
		}
	}
	send(fake.SendOrganization(ctx, "organization.created", clerkfake.Organization{ID: "org_acme", Name: "Acme", Slug: "acme"}))
	send(fake.SendMembership(ctx, "organizationMembership.created", clerkfake.Membership{OrganizationID: "org_acme", UserID: "user_ada", Role: "org:admin"}))
	send(fake.SendOrganization(ctx, "organization.updated", clerkfake.Organization{ID: "org_acme", Name: "Acme Inc", Slug: "acme"}))
	m, err := store.Member(ctx, iss, "org_acme", "user_ada")
	if err != nil || m.Organization.Name != "Acme Inc" || m.Membership.Role != "org:admin" {
		t.Fatalf("Member = %+v, %v", m, err)
	}
	send(fake.SendMembership(ctx, "organizationMembership.updated", clerkfake.Membership{OrganizationID: "org_acme", UserID: "user_ada", Role: "org:member"}))
	if m, err := store.Member(ctx, iss, "org_acme", "user_ada"); err != nil || m.Membership.Role != "org:member" {
		t.Fatalf("after the update: %+v, %v", m, err)
	}
	// Over POST /fake/send, in Clerk's shapes.
	status, b := post(t, fake.Issuer()+"/fake/send", `{"type":"organizationMembership.created","membership":{"organization":{"id":"org_acme"},"public_user_data":{"user_id":"user_bob"},"role":"org:member"}}`)
	if status != 200 || !strings.Contains(string(b), `"status":200`) {
		t.Fatalf("POST /fake/send: %d %s", status, b)
	}
	if _, err := store.Member(ctx, iss, "org_acme", "user_bob"); err != nil {
		t.Fatalf("user_bob: %v", err)
	}
	send(fake.SendMembership(ctx, "organizationMembership.deleted", clerkfake.Membership{OrganizationID: "org_acme", UserID: "user_bob"}))
	if _, err := store.Member(ctx, iss, "org_acme", "user_bob"); !errors.Is(err, orgs.ErrNotMember) {
		t.Fatalf("user_bob after the delete: %v", err)
	}
	// Missed webhooks: the fake changes, the store does not.
	fake.RemoveMembership("org_acme", "user_ada")
	if err := fake.PutOrganization(clerkfake.Organization{ID: "org_quiet", Name: "Quiet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Member(ctx, iss, "org_acme", "user_ada"); err != nil {
		t.Fatalf("a missed delete reached the store: %v", err)
	}
	if _, err := store.Organization(ctx, iss, "org_quiet"); !errors.Is(err, orgs.ErrNotFound) {
		t.Fatalf("a missed create reached the store: %v", err)
	}
	status, b = post(t, fake.Issuer()+"/fake/send", `{"type":"organization.deleted","organization":{"id":"org_acme"}}`)
	if status != 200 || !strings.Contains(string(b), `"status":200`) {
		t.Fatalf("POST /fake/send: %d %s", status, b)
	}
	if _, err := store.Organization(ctx, iss, "org_acme"); !errors.Is(err, orgs.ErrDeleted) || fake.Organizations() != 1 {
		t.Fatalf("after organization.deleted: %v, %d listed", err, fake.Organizations())
	}

	for _, tc := range []struct{ body, want string }{
		{`{"type":"organization.created"}`, "want {"},
		{`{"type":"organization.created","organization":{"name":"x"}}`, "needs the organization's ID"},
		{`{"type":"organization.renamed","organization":{"id":"org_1"}}`, "is not organization.created"},
		{`{"type":"organizationMembership.created","membership":{"organization":{"id":"org_gone"},"public_user_data":{"user_id":"u"}}}`, "no organization"},
		{`{"type":"organizationMembership.created","membership":"m"}`, "not a Clerk membership"},
	} {
		if status, b := post(t, fake.Issuer()+"/fake/send", tc.body); status != 400 || !strings.Contains(string(b), tc.want) {
			t.Fatalf("%s: %d %s, want 400 %s", tc.body, status, b, tc.want)
		}
	}
}

// A member's token names the organization as Clerk's v2 tokens do, and
// jwtverify reads it back with the role's "org:" prefix.
func TestMemberToken(t *testing.T) {
	ctx := context.Background()
	fake := serveFake(t, clerkfake.Config{})
	if err := fake.PutOrganization(clerkfake.Organization{ID: "org_acme", Slug: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := fake.PutMembership(clerkfake.Membership{OrganizationID: "org_acme", UserID: "user_ada", Role: "org:admin"}); err != nil {
		t.Fatal(err)
	}
	v, err := jwtverify.New(ctx, jwtverify.Config{Issuers: []jwtverify.Issuer{{URL: fake.Issuer()}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok, err := fake.MemberToken("user_ada", "org_acme", map[string]any{"azp": "http://localhost:3000"})
	if err != nil {
		t.Fatal(err)
	}
	status, b := post(t, fake.Issuer()+"/fake/tokens?sub=user_ada&org=org_acme", "")
	var out struct{ JWT string }
	if err := json.Unmarshal(b, &out); status != 200 || err != nil {
		t.Fatalf("POST /fake/tokens?org: %d %s", status, b)
	}
	for _, tok := range []string{tok, out.JWT} {
		id, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if o := id.Organization; o == nil || !reflect.DeepEqual(*o, usersync.OrganizationClaim{ID: "org_acme", Slug: "acme", Role: "org:admin"}) {
			t.Fatalf("organization claim %+v", o)
		}
		var claims struct {
			O map[string]string `json:"o"`
		}
		if json.Unmarshal(id.Claims, &claims); claims.O["rol"] != "admin" {
			t.Fatalf("o = %v, want rol without the org: prefix", claims.O)
		}
	}
	if _, err := fake.MemberToken("user_bob", "org_acme", nil); err == nil {
		t.Fatal("a token of a non-member")
	}
	if status, _ := post(t, fake.Issuer()+"/fake/tokens?sub=user_bob&org=org_acme", ""); status != 400 {
		t.Fatalf("POST /fake/tokens of a non-member: %d", status)
	}
	// Any claim, for tests of non-members.
	tok, err = fake.Token("user_bob", clerkfake.OrganizationClaims("org_other", "other", "member"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.Verify(ctx, tok); err != nil || id.Organization == nil || id.Organization.Role != "org:member" || id.Organization.ID != "org_other" {
		t.Fatalf("Verify = %+v, %v", id, err)
	}
}
