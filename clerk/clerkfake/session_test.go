package clerkfake_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
)

// sidOf returns the sid claim of a token, unverified.
func sidOf(t *testing.T, token string) string {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatal(err)
	}
	sid, _ := claims["sid"].(string)
	return sid
}

// The Backend API serves the session of every token the fake mints, in
// Clerk's shape; an unknown one is a 404 in Clerk's error shape.
func TestSessionEndpoint(t *testing.T) {
	now := time.UnixMilli(1_750_000_000_000)
	fake := serveFake(t, clerkfake.Config{Now: func() time.Time { return now }})
	tok, err := fake.Token("user_a", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid := sidOf(t, tok)
	if !strings.HasPrefix(sid, "sess_") {
		t.Fatalf("sid %q", sid)
	}
	status, body := apiGet(t, fake, "/sessions/"+sid)
	if status != 200 {
		t.Fatalf("GET /v1/sessions/{id}: %d %s", status, body)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"abandon_at", "actor", "client_id", "created_at", "expire_at", "id", "last_active_at", "last_active_organization_id", "object", "status", "updated_at", "user_id"}
	if !slices.Equal(keys, want) {
		t.Fatalf("the session's fields: %v, want %v", keys, want)
	}
	var s clerk.Session
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if s.Object != "session" || s.ID != sid || s.UserID != "user_a" || s.Status != "active" || !strings.HasPrefix(s.ClientID, "client_") ||
		s.CreatedAt != now.UnixMilli() || s.UpdatedAt != now.UnixMilli() || s.ExpireAt <= s.CreatedAt || s.LastActiveOrganizationID != nil {
		t.Fatalf("the session: %+v", s)
	}
	if got, ok := fake.Session(sid); !ok || !reflect.DeepEqual(got, s) {
		t.Fatalf("Session = %+v, %v", got, ok)
	}

	status, body = apiGet(t, fake, "/sessions/sess_unknown")
	if status != 404 || !strings.Contains(string(body), `"code":"resource_not_found"`) {
		t.Fatalf("an unknown session: %d %s", status, body)
	}
	fake.RemoveSession(sid)
	if status, _ := apiGet(t, fake, "/sessions/"+sid); status != 404 {
		t.Fatalf("a removed session: %d", status)
	}
	// A member's token names its organization as the session's last
	// active one.
	if err := fake.PutOrganization(clerkfake.Organization{ID: "org_acme", Slug: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := fake.PutMembership(clerkfake.Membership{OrganizationID: "org_acme", UserID: "user_a"}); err != nil {
		t.Fatal(err)
	}
	tok, err = fake.MemberToken("user_a", "org_acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := fake.Session(sidOf(t, tok)); s.LastActiveOrganizationID == nil || *s.LastActiveOrganizationID != "org_acme" {
		t.Fatalf("a member's session: %+v", s)
	}
	if fake.Requests() != 3 {
		t.Fatalf("%d requests counted, want 3", fake.Requests())
	}
}

// SessionToken mints more tokens of one session, of its user, while it is
// active; SetSessionStatus changes it without a webhook.
func TestSessionToken(t *testing.T) {
	fake := serveFake(t, clerkfake.Config{})
	first, err := fake.SessionToken("user_a", "sess_a", map[string]any{"sid": "ignored", "azp": "http://localhost"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := fake.SessionToken("user_a", "sess_a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sidOf(t, first) != "sess_a" || sidOf(t, second) != "sess_a" {
		t.Fatalf("sids %q %q", sidOf(t, first), sidOf(t, second))
	}
	for _, tc := range []struct {
		name string
		mint func() (string, error)
		want string
	}{
		{"another user's session", func() (string, error) { return fake.SessionToken("user_b", "sess_a", nil) }, "another user's"},
		{"a session ID of another shape", func() (string, error) { return fake.SessionToken("user_a", "sess/a", nil) }, "letters, digits"},
		{"a sid claim of another user's session", func() (string, error) { return fake.Token("user_b", map[string]any{"sid": "sess_a"}) }, "another user's"},
		{"an ended session", func() (string, error) {
			if err := fake.SetSessionStatus("sess_a", "ended"); err != nil {
				t.Fatal(err)
			}
			return fake.SessionToken("user_a", "sess_a", nil)
		}, "is ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.mint(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("minted: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if s, ok := fake.Session("sess_a"); !ok || s.Status != "ended" || s.UpdatedAt < s.CreatedAt {
		t.Fatalf("after SetSessionStatus: %+v", s)
	}
	for _, bad := range []struct{ sid, status string }{{"sess_a", "gone"}, {"sess_unknown", "ended"}} {
		if err := fake.SetSessionStatus(bad.sid, bad.status); err == nil {
			t.Fatalf("SetSessionStatus(%q, %q) did not fail", bad.sid, bad.status)
		}
	}
	// A token without a session registers none.
	if _, err := fake.Token("user_a", map[string]any{"sid": nil}); err != nil {
		t.Fatal(err)
	}
	// POST /fake/tokens?sid=: a token of that session.
	status, body := post(t, fake.Issuer()+"/fake/tokens?sub=user_c&sid=sess_c", "")
	var out struct{ JWT string }
	if json.Unmarshal(body, &out); status != 200 || sidOf(t, out.JWT) != "sess_c" {
		t.Fatalf("POST /fake/tokens?sid=: %d %s", status, body)
	}
	for _, q := range []string{"sub=user_b&sid=sess_c", "sub=user_a&sid=sess_a", "sub=user_a&sid=sess%2Fa"} {
		if status, body := post(t, fake.Issuer()+"/fake/tokens?"+q, ""); status != 400 {
			t.Fatalf("POST /fake/tokens?%s: %d %s", q, status, body)
		}
	}
}

// EndSession ends a session and delivers its signed session.<how> event,
// with the session (and its listed user) as data; so does POST /fake/send.
func TestEndSession(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var got []string // the bodies delivered
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	fake := serveFake(t, clerkfake.Config{WebhookURL: hook.URL})
	p, err := clerk.New(clerk.Config{Issuer: fake.Issuer(), WebhookSecrets: []string{fake.WebhookSecret()}})
	if err != nil {
		t.Fatal(err)
	}
	fake.Put(clerkfake.User{ID: "user_a", FirstName: clerkfake.Str("Ada"), UpdatedAt: time.Now()})
	for _, sid := range []string{"sess_a", "sess_b", "sess_c"} {
		if _, err := fake.SessionToken("user_a", sid, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sid, how string
		send     func() (int, error)
	}{
		{"sess_a", "ended", nil},
		{"sess_b", "removed", nil},
		{"sess_c", "revoked", func() (int, error) {
			status, body := post(t, fake.Issuer()+"/fake/send", `{"type":"session.revoked","session":{"id":"sess_c"}}`)
			if status != 200 || !strings.Contains(string(body), `"status":200`) {
				t.Fatalf("POST /fake/send: %d %s", status, body)
			}
			return 200, nil
		}},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		send := tc.send
		if send == nil {
			send = func() (int, error) { return fake.EndSession(ctx, tc.sid, tc.how) }
		}
		if status, err := send(); status != 200 || err != nil {
			t.Fatalf("%s: %d, %v", tc.how, status, err)
		}
		mu.Lock()
		bodies := got
		mu.Unlock()
		if len(bodies) != 1 {
			t.Fatalf("%d deliveries", len(bodies))
		}
		var ev struct {
			Type      string
			Object    string
			Timestamp int64
			Data      struct {
				clerk.Session
				User *clerk.User `json:"user"`
			}
		}
		if err := json.Unmarshal([]byte(bodies[0]), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "session."+tc.how || ev.Object != "event" || ev.Data.ID != tc.sid || ev.Data.UserID != "user_a" || ev.Data.Status != tc.how ||
			ev.Timestamp != ev.Data.UpdatedAt || ev.Data.User == nil || ev.Data.User.ID != "user_a" {
			t.Fatalf("delivered %s", bodies[0])
		}
		if s, _ := fake.Session(tc.sid); s.Status != tc.how {
			t.Fatalf("the fake's session: %+v", s)
		}
		// Clerk's own decoding of it takes it for a session event.
		if ev, err := p.Decode(ctx, []byte(bodies[0])); err != nil || ev.Type != "session."+tc.how {
			t.Fatalf("Decode: %+v, %v", ev, err)
		}
	}
	for _, tc := range []struct{ sid, how, want string }{
		{"sess_unknown", "ended", "no session"},
		{"sess_a", "expired", `"ended", "removed" or "revoked"`},
	} {
		if _, err := fake.EndSession(ctx, tc.sid, tc.how); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("EndSession(%q, %q): %v", tc.sid, tc.how, err)
		}
	}
	for _, tc := range []struct{ body, want string }{
		{`{"type":"session.ended"}`, "want {"},
		{`{"type":"session.ended","session":{"status":"ended"}}`, `with an \"id\"`},
		{`{"type":"session.ended","session":{"id":"sess_unknown"}}`, "no session"},
	} {
		if status, b := post(t, fake.Issuer()+"/fake/send", tc.body); status != 400 || !strings.Contains(string(b), tc.want) {
			t.Fatalf("%s: %d %s, want 400 %s", tc.body, status, b, tc.want)
		}
	}
	// SessionEvent builds the body of any session event.
	body := clerkfake.SessionEvent("session.created", clerk.Session{ID: "sess_x", UserID: "user_a", Status: "active", UpdatedAt: 5})
	if !strings.Contains(string(body), `"type":"session.created"`) || !strings.Contains(string(body), `"timestamp":5`) || !strings.Contains(string(body), `"user":null`) {
		t.Fatalf("SessionEvent: %s", body)
	}
}
