package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/testdb"
)

// Clerk's organization webhooks, as the chat receives them (signed by
// the test's sender): the shapes of @clerk/backend's OrganizationJSON and
// OrganizationMembershipJSON.

// version is a Clerk updated_at (ms) later than every earlier one.
var version atomic.Int64

func nextVersion() int64 {
	now := time.Now().UnixMilli()
	for {
		v := version.Load()
		next := max(now, v+1)
		if version.CompareAndSwap(v, next) {
			return next
		}
	}
}

func clerkEvent(eventType string, data any) []byte {
	b, err := json.Marshal(map[string]any{"type": eventType, "object": "event", "timestamp": time.Now().UnixMilli(), "data": data})
	if err != nil {
		panic(err)
	}
	return b
}

type testOrg struct{ id, name, slug string }

func (o testOrg) json(created, updated int64) map[string]any {
	return map[string]any{"object": "organization", "id": o.id, "name": o.name, "slug": o.slug, "image_url": nil, "has_image": false,
		"members_count": 1, "max_allowed_memberships": 5, "admin_delete_enabled": true, "public_metadata": map[string]any{},
		"private_metadata": map[string]any{}, "created_by": "user_ada", "created_at": created, "updated_at": updated}
}

// orgEvent is an organization.created or organization.updated event.
func orgEvent(eventType string, o testOrg) []byte {
	v := nextVersion()
	return clerkEvent(eventType, o.json(v, v))
}

// orgDeletedEvent is Clerk's organization.deleted: a tombstone.
func orgDeletedEvent(id string) []byte {
	return clerkEvent("organization.deleted", map[string]any{"object": "organization", "id": id, "deleted": true})
}

// testMembership is a membership of a user in an organization: id is
// Clerk's "orgmem_…", created its created_at (ms).
type testMembership struct {
	id      string
	org     testOrg
	user    string
	role    string
	created int64
}

func newMembership(id string, org testOrg, user, role string) testMembership {
	return testMembership{id: id, org: org, user: user, role: role, created: nextVersion()}
}

// event is an organizationMembership.created, .updated or .deleted
// event: every one carries the whole membership.
func (m testMembership) event(eventType string) []byte {
	return clerkEvent(eventType, map[string]any{"object": "organization_membership", "id": m.id, "role": m.role,
		"permissions": []string{}, "public_metadata": map[string]any{}, "private_metadata": map[string]any{},
		"created_at": m.created, "updated_at": nextVersion(), "organization": m.org.json(m.created, m.created),
		"public_user_data": map[string]any{"user_id": m.user, "identifier": m.user + "@example.com", "first_name": nil, "last_name": nil,
			"image_url": "", "has_image": false}})
}

// webhook posts a signed delivery of body to the chat's webhook endpoint.
func (ta *testApp) webhook(t *testing.T, body []byte) {
	t.Helper()
	w := recorder(ta.h, ta.sender.Request("/clerk-users-webhook", body))
	expect(t, "webhook", w, 200)
}

// orgToken is a session token of sub whose active organization (Clerk's
// v2 "o" claim) is org.
func (ta *testApp) orgToken(sub, name string, org testOrg, role string) string {
	return ta.issuer.Token(map[string]any{"sub": sub, "name": name, "o": map[string]any{"id": org.id, "slg": org.slug, "rol": role}})
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error of Content-Type %q: %s", ct, w.Body)
	}
	return decode[map[string]string](t, w)["error"]
}

func TestOrgRooms(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ta := newTestApp(t, url)
			acme, globex := testOrg{"org_2acme", "Acme", "acme"}, testOrg{"org_2globex", "Globex", "globex"}
			ada := ta.issuer.Token(map[string]any{"sub": "user_ada", "name": "Ada"})
			bob := ta.orgToken("user_bob", "Bob", acme, "member") // names Acme as his active organization
			carol := ta.orgToken("user_carol", "Carol", acme, "admin")

			// Every room endpoint wants a valid token.
			for _, ep := range [][2]string{{"GET", "/api/orgs"}, {"GET", "/api/orgs/" + acme.id + "/messages"}, {"POST", "/api/orgs/" + acme.id + "/messages"}} {
				w := ta.do(ep[0], ep[1], "", map[string]string{"body": "hi"})
				expect(t, ep[0]+" "+ep[1]+" without a token", w, 401)
				if e := errorOf(t, w); e != "unauthorized" || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer realm="chat"`) {
					t.Fatalf("401: %q, %q", e, w.Header().Get("WWW-Authenticate"))
				}
			}

			// Signed in, before any organization: no rooms (a JSON array).
			w := ta.do("GET", "/api/orgs", ada, nil)
			expect(t, "orgs before any", w, 200)
			if strings.TrimSpace(w.Body.String()) != "[]" {
				t.Fatalf("orgs before any = %s, want []", w.Body)
			}

			// Clerk's webhooks: two organizations; Ada admin of Acme and a
			// member of Globex, Bob a member of Acme, Carol of none. Bob's
			// membership arrives before his first request.
			ta.webhook(t, orgEvent("organization.created", acme))
			ta.webhook(t, orgEvent("organization.created", globex))
			adaAcme := newMembership("orgmem_ada_acme", acme, "user_ada", "org:admin")
			bobAcme := newMembership("orgmem_bob_acme", acme, "user_bob", "org:member")
			for _, m := range []testMembership{adaAcme, newMembership("orgmem_ada_globex", globex, "user_ada", "org:member"), bobAcme} {
				ta.webhook(t, m.event("organizationMembership.created"))
			}

			type orgOut struct{ ID, Name, Slug, Role string }
			orgsOf := func(tok string) []orgOut {
				t.Helper()
				w := ta.do("GET", "/api/orgs", tok, nil)
				expect(t, "orgs", w, 200)
				var raw []map[string]any
				json.Unmarshal(w.Body.Bytes(), &raw)
				for _, o := range raw {
					if len(o) != 4 {
						t.Fatalf("an organization of /api/orgs has fields %v, want id, name, slug and role", o)
					}
				}
				return decode[[]orgOut](t, w)
			}
			if got, want := fmt.Sprint(orgsOf(ada)), fmt.Sprint([]orgOut{{acme.id, "Acme", "acme", "org:admin"}, {globex.id, "Globex", "globex", "org:member"}}); got != want {
				t.Fatalf("Ada's orgs = %s, want %s", got, want)
			}
			if got := orgsOf(bob); len(got) != 1 || got[0] != (orgOut{acme.id, "Acme", "acme", "org:member"}) {
				t.Fatalf("Bob's orgs = %+v", got)
			}
			if got := orgsOf(carol); len(got) != 0 {
				t.Fatalf("Carol's orgs = %+v: her token's claim makes no membership", got)
			}

			// Members send and read; each message gets an ID.
			room := "/api/orgs/" + acme.id + "/messages"
			var ids []int64
			for _, s := range []struct{ tok, body string }{{ada, "hello Acme"}, {bob, "hi Ada"}, {ada, "third"}} {
				w := ta.do("POST", room, s.tok, map[string]string{"body": s.body})
				expect(t, "send to the room", w, 201)
				got := decode[map[string]int64](t, w)
				if got["id"] <= 0 || len(got) != 1 {
					t.Fatalf("send answered %s, want {\"id\": …}", w.Body)
				}
				ids = append(ids, got["id"])
			}
			expect(t, "empty message", ta.do("POST", room, ada, map[string]string{"body": "  "}), 400)
			expect(t, "oversized message", ta.do("POST", room, ada, map[string]string{"body": strings.Repeat("x", 2001)}), 400)
			expect(t, "not JSON", ta.do("POST", room, ada, "body=hi"), 400)
			before := ta.store.getMany.Load()
			w = ta.do("GET", room, bob, nil)
			expect(t, "list the room", w, 200)
			msgs := decode[[]messageJSON](t, w)
			if len(msgs) != 3 || msgs[0].Body != "hello Acme" || msgs[0].Author != "Ada" || msgs[1].Author != "Bob" || msgs[0].ID != ids[0] || msgs[2].ID != ids[2] || msgs[0].UserID == "" {
				t.Fatalf("room messages = %+v", msgs)
			}
			if n := ta.store.getMany.Load() - before; n != 1 {
				t.Fatalf("listing the room cost %d GetMany calls, want 1", n)
			}
			page := decode[[]messageJSON](t, ta.do("GET", room+"?limit=1&after="+itoa(ids[0]), ada, nil))
			if len(page) != 1 || page[0].Body != "hi Ada" {
				t.Fatalf("second page = %+v", page)
			}
			expect(t, "bad limit", ta.do("GET", room+"?limit=501", ada, nil), 400)
			expect(t, "bad after", ta.do("GET", room+"?after=x", ada, nil), 400)

			// The rooms are apart: Globex's is empty, the global one has none
			// of them, and the global sent count counts its own only.
			w = ta.do("GET", "/api/orgs/"+globex.id+"/messages", ada, nil)
			expect(t, "another room", w, 200)
			if strings.TrimSpace(w.Body.String()) != "[]" {
				t.Fatalf("Globex's room = %s, want []", w.Body)
			}
			expect(t, "global message", ta.do("POST", "/api/messages", ada, map[string]string{"body": "to everyone"}), 201)
			if all := decode[[]messageJSON](t, ta.do("GET", "/api/messages", ada, nil)); len(all) != 1 || all[0].Body != "to everyone" {
				t.Fatalf("global messages = %+v", all)
			}
			if c := decode[map[string]int](t, ta.do("GET", "/api/messages/sent-count", ada, nil))["count"]; c != 1 {
				t.Fatalf("sent count = %d, want 1", c)
			}

			// A signed-in non-member is refused, whatever their token's
			// active organization says; Bob is no member of Globex.
			for _, r := range []struct{ tok, path string }{{carol, room}, {bob, "/api/orgs/" + globex.id + "/messages"}} {
				for _, method := range []string{"GET", "POST"} {
					w := ta.do(method, r.path, r.tok, map[string]string{"body": "let me in"})
					expect(t, method+" by a non-member", w, 403)
					if e := errorOf(t, w); e != "not a member" {
						t.Fatalf("403 error %q", e)
					}
				}
			}
			// An unknown organization.
			for _, method := range []string{"GET", "POST"} {
				w := ta.do(method, "/api/orgs/org_unknown/messages", ada, map[string]string{"body": "hello?"})
				expect(t, method+" in an unknown organization", w, 404)
				if e := errorOf(t, w); e != "organization not found" {
					t.Fatalf("404 error %q", e)
				}
			}

			// Clerk removes Bob from Acme: his next request is refused,
			// though his token still names Acme as his active organization.
			ta.webhook(t, bobAcme.event("organizationMembership.deleted"))
			for _, method := range []string{"GET", "POST"} {
				w := ta.do(method, room, bob, map[string]string{"body": "still here?"})
				expect(t, method+" after the membership's deletion", w, 403)
				if e := errorOf(t, w); e != "not a member" {
					t.Fatalf("403 error %q", e)
				}
			}
			if got := orgsOf(bob); len(got) != 0 {
				t.Fatalf("Bob's orgs after his removal = %+v", got)
			}
			// He joins again, with a new membership ID: in at once.
			ta.webhook(t, newMembership("orgmem_bob_acme_2", acme, "user_bob", "org:member").event("organizationMembership.created"))
			expect(t, "after joining again", ta.do("GET", room, bob, nil), 200)

			// Clerk deletes Globex: its room is gone for everyone.
			ta.webhook(t, orgDeletedEvent(globex.id))
			for _, method := range []string{"GET", "POST"} {
				w := ta.do(method, "/api/orgs/"+globex.id+"/messages", ada, map[string]string{"body": "anyone?"})
				expect(t, method+" in a deleted organization", w, 404)
				if e := errorOf(t, w); e != "organization not found" {
					t.Fatalf("404 error %q", e)
				}
			}
			if got := orgsOf(ada); len(got) != 1 || got[0].ID != acme.id {
				t.Fatalf("Ada's orgs after Globex's deletion = %+v", got)
			}

			// Clerk deletes Ada: her room messages stay, by "deleted user",
			// she cannot send, and the change feed's consumer erases them.
			ta.webhook(t, clerktest.UserDeletedEvent("user_ada"))
			msgs = decode[[]messageJSON](t, ta.do("GET", room, bob, nil))
			if len(msgs) != 3 || msgs[0].Author != "deleted user" || msgs[1].Author != "Bob" {
				t.Fatalf("room after Ada's deletion = %+v", msgs)
			}
			ta.waitEnded(t, "user_ada") // her sessions ended with her
			expect(t, "send as a deleted user", ta.do("POST", room, ada, map[string]string{"body": "zombie"}), 401)
			expect(t, "orgs of a deleted user", ta.do("GET", "/api/orgs", ada, nil), 401)
			stop := ta.consumeInBackground(context.Background())
			defer stop()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				msgs = decode[[]messageJSON](t, ta.do("GET", room, bob, nil))
				if msgs[0].Body == erased && msgs[2].Body == erased {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Ada's room messages were not erased: %+v", msgs)
				}
			}
			if msgs[1].Body != "hi Ada" {
				t.Fatalf("Bob's message was erased: %+v", msgs)
			}
			if all := decode[[]messageJSON](t, ta.do("GET", "/api/messages", bob, nil)); all[0].Body != erased {
				t.Fatalf("Ada's global message was not erased: %+v", all)
			}
		})
	}
}

// TestOrgsListPages: GET /api/orgs lists every organization of the user,
// however many pages of the store they take.
func TestOrgsListPages(t *testing.T) {
	ta := newTestApp(t, "memory:")
	n := 2*orgsPage + 3
	for i := range n {
		o := testOrg{fmt.Sprintf("org_%03d", i), fmt.Sprintf("Org %d", i), fmt.Sprintf("org-%d", i)}
		ta.webhook(t, orgEvent("organization.created", o))
		ta.webhook(t, newMembership(fmt.Sprintf("orgmem_%03d", i), o, "user_ada", "org:member").event("organizationMembership.created"))
	}
	tok := ta.issuer.Token(map[string]any{"sub": "user_ada"})
	w := ta.do("GET", "/api/orgs", tok, nil)
	expect(t, "orgs", w, 200)
	got := decode[[]orgJSON](t, w)
	if len(got) != n {
		t.Fatalf("%d organizations listed, want %d", len(got), n)
	}
	for i, o := range got {
		if o.ID != fmt.Sprintf("org_%03d", i) {
			t.Fatalf("organization %d is %s", i, o.ID)
		}
	}
}

// TestRoomsOnAnEarlierDatabase: a chat database of the version before the
// rooms (no org_messages table) keeps its messages and gets the rooms'
// table at start, with its messages table as it was.
func TestRoomsOnAnEarlierDatabase(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			url := databaseURL(t, b)
			before := newTestApp(t, url)
			tok := before.issuer.Token(map[string]any{"sub": "user_ada", "name": "Ada"})
			expect(t, "send", before.do("POST", "/api/messages", tok, map[string]string{"body": "from before the rooms"}), 201)
			db := before.msgs.(*sqlMessages).db
			if _, err := db.Exec("DROP TABLE org_messages"); err != nil {
				t.Fatal(err)
			}
			columns := func() string {
				t.Helper()
				rows, err := db.Query("SELECT * FROM messages")
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				cols, err := rows.Columns()
				if err != nil {
					t.Fatal(err)
				}
				return strings.Join(cols, ",")
			}
			was := columns()

			ta := newTestApp(t, url) // the chat of this version starts on it
			if now := columns(); now != was {
				t.Fatalf("the messages table changed: %s, was %s", now, was)
			}
			tok = ta.issuer.Token(map[string]any{"sub": "user_bob", "name": "Bob"})
			if msgs := decode[[]messageJSON](t, ta.do("GET", "/api/messages", tok, nil)); len(msgs) != 1 || msgs[0].Body != "from before the rooms" {
				t.Fatalf("messages = %+v", msgs)
			}
			acme := testOrg{"org_2acme", "Acme", "acme"}
			ta.webhook(t, orgEvent("organization.created", acme))
			ta.webhook(t, newMembership("orgmem_1", acme, "user_bob", "org:member").event("organizationMembership.created"))
			expect(t, "send to a room", ta.do("POST", "/api/orgs/"+acme.id+"/messages", tok, map[string]string{"body": "hi"}), 201)
		})
	}
}
