package clerk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
)

// The IDs of the payloads in testdata/events.
const (
	acmeID    = "org_29w9IfBrPmcpi0IeBVaKtA7R94W"
	memberID  = "orgmem_29w9IptNja3mP8GDXpquBwN2qR9"
	memberSub = "user_29w83sxmDNGwOuEthce5gg56FcC"
)

// event returns the payload of testdata/events/<name>.json.
func event(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "events", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// orgClock is a clock shortly after the payloads of testdata/events, so
// that their versions are not in its future.
func orgClock() time.Time { return time.UnixMilli(1_700_000_000_000) }

// newOrgSyncer returns an orgs.Syncer over store.
func newOrgSyncer(t testing.TB, store orgs.Store) *orgs.Syncer {
	t.Helper()
	s, err := orgs.New(orgs.Config{Store: store, Logger: quiet, Now: orgClock})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newOrgWebhook returns the webhook handler of an instance whose
// organization events go to store (none if nil), with OnEvent.
func newOrgWebhook(t testing.TB, store usersync.Store, sender *clerktest.WebhookSender, onEvent func(context.Context, usersync.Event) error) http.Handler {
	t.Helper()
	cfg := clerk.Config{WebhookSecrets: []string{sender.Secret}, Issuer: clerkIssuer}
	if os, ok := store.(orgs.Store); ok {
		cfg.Organizations = newOrgSyncer(t, os)
	}
	p, err := clerk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := usersync.New(usersync.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h, err := usersync.NewWebhookHandler(s, p, usersync.WebhookConfig{Logger: quiet, OnEvent: onEvent})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestDecodeOrganizationEvents(t *testing.T) {
	withOrgs, err := clerk.New(clerk.Config{Issuer: clerkIssuer + "/", Organizations: newOrgSyncer(t, memstore.New())})
	if err != nil {
		t.Fatal(err)
	}
	without, err := clerk.New(clerk.Config{Issuer: clerkIssuer})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{
		"organization.created", "organization.updated", "organization.deleted",
		"organizationMembership.created", "organizationMembership.updated", "organizationMembership.deleted",
		"organizationInvitation.accepted",
	} {
		t.Run(name, func(t *testing.T) {
			body := event(t, name)
			ev, err := withOrgs.Decode(ctx, body)
			if err != nil {
				t.Fatal(err)
			}
			wantApply := !strings.HasPrefix(name, "organizationInvitation.")
			if ev.Type != name || ev.Write != nil || ev.Delete || (ev.Apply != nil) != wantApply {
				t.Fatalf("with an orgs Syncer: %+v", ev)
			}
			ev, err = without.Decode(ctx, body)
			if err != nil || ev.Type != name || ev.Write != nil || ev.Apply != nil {
				t.Fatalf("without: %+v, %v", ev, err)
			}
		})
	}
	malformed := []struct{ name, body, wantErr string }{
		{"organization without data", `{"type":"organization.created"}`, "without data.id"},
		{"organization without an id", `{"type":"organization.updated","data":{"name":"Acme","updated_at":1}}`, "without data.id"},
		{"organization.deleted without an id", `{"type":"organization.deleted","data":{"deleted":true}}`, "without data.id"},
		{"organization without updated_at", `{"type":"organization.created","data":{"id":"org_1","name":"Acme"}}`, "without data.updated_at"},
		{"organization with a numeric id", `{"type":"organization.created","data":{"id":42,"updated_at":1}}`, "malformed"},
		{"organization with a text updated_at", `{"type":"organization.created","data":{"id":"org_1","updated_at":"1654013202977"}}`, "malformed"},
		{"organization data of another shape", `{"type":"organization.created","data":["org_1"]}`, "malformed"},
		{"membership without an id", `{"type":"organizationMembership.created","data":{"organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"},"updated_at":1}}`, "without data.id"},
		{"membership without an organization", `{"type":"organizationMembership.created","data":{"id":"orgmem_1","public_user_data":{"user_id":"user_1"},"updated_at":1}}`, "organization.id"},
		{"membership without a user", `{"type":"organizationMembership.deleted","data":{"id":"orgmem_1","organization":{"id":"org_1"},"updated_at":1}}`, "user_id"},
		{"membership without updated_at", `{"type":"organizationMembership.updated","data":{"id":"orgmem_1","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"}}}`, "without data.updated_at"},
		{"membership with text permissions", `{"type":"organizationMembership.created","data":{"id":"orgmem_1","permissions":"all","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"},"updated_at":1}}`, "malformed"},
		{"membership with a text organization", `{"type":"organizationMembership.created","data":{"id":"orgmem_1","organization":"org_1","public_user_data":{"user_id":"user_1"},"updated_at":1}}`, "malformed"},
		{"membership with a numeric user", `{"type":"organizationMembership.created","data":{"id":"orgmem_1","organization":{"id":"org_1"},"public_user_data":{"user_id":7},"updated_at":1}}`, "malformed"},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			_, err := withOrgs.Decode(ctx, []byte(tc.body))
			if !errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrInvalid with %q", err, tc.wantErr)
			}
			// Without an orgs Syncer, they are events about something else,
			// as before.
			if ev, err := without.Decode(ctx, []byte(tc.body)); err != nil || ev.Apply != nil || ev.Write != nil {
				t.Fatalf("without: %+v, %v", ev, err)
			}
		})
	}
}

// The payloads map to the rows a store keeps: public metadata only, the
// versions and creation times of the payload, the provider's issuer.
func TestMapOrganizationAndMembership(t *testing.T) {
	var org struct{ Data clerk.Organization }
	if err := json.Unmarshal(event(t, "organization.created"), &org); err != nil {
		t.Fatal(err)
	}
	o := clerk.MapOrganization(clerkIssuer, &org.Data)
	want := orgs.Organization{
		Issuer: clerkIssuer, ID: acmeID, Name: "Acme Inc", Slug: "acme-inc", ImageURL: "https://img.clerk.com/xxxxxx",
		Metadata: json.RawMessage(`{"plan": "team"}`), CreatedAt: time.UnixMilli(1654013202977), Version: 1654013202977,
	}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("organization\n got %+v\nwant %+v", o, want)
	}
	var mem struct{ Data clerk.OrganizationMembership }
	if err := json.Unmarshal(event(t, "organizationMembership.created"), &mem); err != nil {
		t.Fatal(err)
	}
	m := clerk.MapMembership(clerkIssuer, &mem.Data)
	wantM := orgs.Membership{
		Issuer: clerkIssuer, OrganizationID: acmeID, UserSubject: memberSub, ID: memberID, Role: "org:admin",
		Permissions: []string{"org:sys_profile:manage", "org:sys_memberships:read", "org:sys_memberships:manage"},
		Metadata:    json.RawMessage(`{"seat": "A-1"}`), CreatedAt: time.UnixMilli(1654013203217), Version: 1654013203217,
	}
	if !reflect.DeepEqual(m, wantM) {
		t.Fatalf("membership\n got %+v\nwant %+v", m, wantM)
	}
	var upd struct{ Data clerk.Organization }
	if err := json.Unmarshal(event(t, "organization.updated"), &upd); err != nil {
		t.Fatal(err)
	}
	if o := clerk.MapOrganization(clerkIssuer, &upd.Data); o.Metadata != nil || o.ImageURL != "" || o.Slug != "acme-incorporated" {
		t.Fatalf("null metadata and image: %+v", o)
	}
}

// failingOrgs is a store whose organization and membership writes fail.
type failingOrgs struct{ *memstore.Store }

var errStoreDown = errors.New("store down")

func (failingOrgs) UpsertOrganization(context.Context, orgs.Organization) (orgs.Organization, usersync.Outcome, error) {
	return orgs.Organization{}, usersync.Stale, errStoreDown
}

func (failingOrgs) UpsertMembership(context.Context, orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	return orgs.Membership{}, usersync.Stale, errStoreDown
}

func (failingOrgs) DeleteOrganization(context.Context, string, string, time.Time) (orgs.Organization, usersync.Outcome, error) {
	return orgs.Organization{}, usersync.Stale, errStoreDown
}

func (failingOrgs) DeleteMembership(context.Context, orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	return orgs.Membership{}, usersync.Stale, errStoreDown
}

// TestOrganizationWebhooks delivers Clerk's organization and membership
// events, signed, through the real handler into memstore: each step
// answers its status and outcome, whatever came before.
func TestOrganizationWebhooks(t *testing.T) {
	type step struct {
		body    string // an event of testdata/events, or a JSON body
		status  int
		outcome string
	}
	orgCreated, orgUpdated, orgDeleted := "organization.created", "organization.updated", "organization.deleted"
	memCreated, memUpdated, memDeleted := "organizationMembership.created", "organizationMembership.updated", "organizationMembership.deleted"
	for _, tc := range []struct {
		name  string
		store usersync.Store // default memstore.New()
		steps []step
		check func(t *testing.T, store orgs.Store)
	}{
		{"an organization's life", nil, []step{
			{orgCreated, 200, "created"}, {orgUpdated, 200, "updated"}, {orgUpdated, 200, "stale"},
			{orgCreated, 200, "stale"}, {orgDeleted, 200, "deleted"}, {orgDeleted, 200, "stale"},
		}, func(t *testing.T, store orgs.Store) {
			if _, err := store.Organization(context.Background(), clerkIssuer, acmeID); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("after the delete: %v", err)
			}
		}},
		{"a late created or updated of a deleted organization", nil, []step{
			{orgDeleted, 200, "deleted"}, {orgCreated, 200, "deleted entity"}, {orgUpdated, 200, "deleted entity"},
			{memCreated, 200, "deleted entity"},
		}, func(t *testing.T, store orgs.Store) {
			if ms, err := store.Memberships(context.Background(), clerkIssuer, acmeID, "", 10); err != nil || len(ms) != 0 {
				t.Fatalf("memberships of a deleted organization: %v, %v", ms, err)
			}
		}},
		{"a membership before its organization", nil, []step{
			{memCreated, 200, "created"}, {orgCreated, 200, "stale"}, {orgUpdated, 200, "updated"},
		}, func(t *testing.T, store orgs.Store) {
			m, err := store.Member(context.Background(), clerkIssuer, acmeID, memberSub)
			if err != nil || m.Membership.Role != "org:admin" || m.Membership.ID != memberID || m.Organization.Name != "Acme Incorporated" {
				t.Fatalf("Member = %+v, %v", m, err)
			}
		}},
		{"a membership's life", nil, []step{
			{orgCreated, 200, "created"}, {memCreated, 200, "created"}, {memUpdated, 200, "updated"},
			{memCreated, 200, "stale"}, {memDeleted, 200, "deleted"}, {memUpdated, 200, "deleted entity"},
			{memDeleted, 200, "stale"},
		}, func(t *testing.T, store orgs.Store) {
			if _, err := store.Member(context.Background(), clerkIssuer, acmeID, memberSub); !errors.Is(err, orgs.ErrNotMember) {
				t.Fatalf("Member after the delete: %v", err)
			}
			if o, err := store.Organization(context.Background(), clerkIssuer, acmeID); err != nil || o.Name != "Acme Inc" {
				t.Fatalf("the organization: %+v, %v", o, err)
			}
		}},
		{"a membership deleted before it was created", nil, []step{
			{memDeleted, 200, "deleted"}, {memCreated, 200, "deleted entity"}, {memUpdated, 200, "deleted entity"},
		}, nil},
		{"the organization's delete ends its memberships", nil, []step{
			{memCreated, 200, "created"}, {orgDeleted, 200, "deleted"}, {memUpdated, 200, "deleted entity"},
		}, func(t *testing.T, store orgs.Store) {
			if _, err := store.Member(context.Background(), clerkIssuer, acmeID, memberSub); !errors.Is(err, orgs.ErrDeleted) {
				t.Fatalf("Member: %v", err)
			}
		}},
		{"a membership of a deleted user", nil, []step{
			{string(clerktest.UserDeletedEvent(memberSub)), 200, "deleted"}, {memCreated, 200, "deleted entity"},
		}, nil},
		{"malformed", nil, []step{
			{`{"type":"organization.created","data":{"id":42,"updated_at":1}}`, 400, "bad request"},
			{`{"type":"organization.created","data":{"id":"org_1"}}`, 400, "bad request"},
			{`{"type":"organizationMembership.created","data":{"id":"orgmem_1","organization":{"id":"org_1"},"updated_at":1}}`, 400, "bad request"},
			{`{"type":"organizationMembership.created","data":{"id":"orgmem_1","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"},"updated_at":99999999999999}}`, 400, "invalid data"},
			{`{"type":"organization.updated","data":{"id":"org_1","name":"a\u0000b","updated_at":1}}`, 400, "invalid data"},
		}, nil},
		{"the store fails", failingOrgs{memstore.New()}, []step{
			{orgCreated, 500, "store failed"}, {orgDeleted, 500, "store failed"}, {memCreated, 500, "store failed"}, {memDeleted, 500, "store failed"},
		}, nil},
		{"invitations are other events", nil, []step{{"organizationInvitation.accepted", 200, "ignored"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store
			if store == nil {
				store = memstore.New()
			}
			sender := clerktest.NewWebhookSender(t)
			h := newOrgWebhook(t, store, sender, nil)
			for i, s := range tc.steps {
				body := []byte(s.body)
				if !strings.HasPrefix(s.body, "{") {
					body = event(t, s.body)
				}
				w := serve(h, sender.Request("/hook", body))
				var got struct{ Outcome string }
				json.Unmarshal(w.Body.Bytes(), &got)
				if w.Code != s.status || got.Outcome != s.outcome {
					t.Fatalf("step %d (%.60s): %d %q, want %d %q", i, s.body, w.Code, got.Outcome, s.status, s.outcome)
				}
			}
			if tc.check != nil {
				tc.check(t, store.(orgs.Store))
			}
		})
	}
}

// A redelivered organization event is a duplicate; a store failure is
// not remembered, so the provider's retry applies it.
func TestOrganizationWebhookRedelivery(t *testing.T) {
	store := &flakyOrgs{Store: memstore.New(), fail: 1}
	sender := clerktest.NewWebhookSender(t)
	h := newOrgWebhook(t, store, sender, nil)
	body := event(t, "organizationMembership.created")
	first := sender.Request("/hook", body)
	redeliver := func() *http.Request {
		r := httptest.NewRequest("POST", "/hook", bytes.NewReader(body))
		r.Header = first.Header.Clone()
		return r
	}
	for i, want := range []struct {
		status  int
		outcome string
	}{{500, "store failed"}, {200, "created"}, {200, "duplicate"}} {
		r := first
		if i > 0 {
			r = redeliver()
		}
		w := serve(h, r)
		if w.Code != want.status || !strings.Contains(w.Body.String(), want.outcome) {
			t.Fatalf("delivery %d: %d %s, want %d %s", i, w.Code, w.Body, want.status, want.outcome)
		}
	}
}

// flakyOrgs fails its first fail membership writes.
type flakyOrgs struct {
	*memstore.Store
	fail int
}

func (f *flakyOrgs) UpsertMembership(ctx context.Context, m orgs.Membership) (orgs.Membership, usersync.Outcome, error) {
	if f.fail > 0 {
		f.fail--
		return orgs.Membership{}, usersync.Stale, errStoreDown
	}
	return f.Store.UpsertMembership(ctx, m)
}

// Without an orgs Syncer, organization events go to OnEvent (or are
// ignored) as every other event does; invitations go there either way.
func TestOrganizationEventsWithoutSyncer(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	var got []string
	onEvent := func(_ context.Context, ev usersync.Event) error {
		got = append(got, ev.Type)
		if len(ev.Raw) == 0 {
			t.Error("OnEvent without Raw")
		}
		return nil
	}
	// A usersync.Store that does not keep organizations.
	h := newOrgWebhook(t, usersOnly{memstore.New()}, sender, onEvent)
	names := []string{"organization.created", "organizationMembership.created", "organizationMembership.deleted", "organization.deleted", "organizationInvitation.accepted"}
	for _, name := range names {
		if w := serve(h, sender.Request("/hook", event(t, name))); w.Code != 200 || !strings.Contains(w.Body.String(), "handled") {
			t.Fatalf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	if !reflect.DeepEqual(got, names) {
		t.Fatalf("OnEvent got %v", got)
	}
	// With one, invitations still go to OnEvent.
	got = nil
	h = newOrgWebhook(t, memstore.New(), sender, onEvent)
	if w := serve(h, sender.Request("/hook", event(t, "organizationInvitation.accepted"))); w.Code != 200 || len(got) != 1 {
		t.Fatalf("invitation: %d %s, OnEvent %v", w.Code, w.Body, got)
	}
	if w := serve(h, sender.Request("/hook", event(t, "organization.created"))); w.Code != 200 || len(got) != 1 {
		t.Fatalf("organization: %d %s, OnEvent %v", w.Code, w.Body, got)
	}
}

// usersOnly hides every method of the store but usersync.Store's.
type usersOnly struct{ usersync.Store }
