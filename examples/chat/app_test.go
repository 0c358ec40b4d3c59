package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/usersynctest"
)

// testApp is the chat in Clerk mode against a fake issuer, with a webhook
// sender holding its signing secret.
type testApp struct {
	*app
	h      http.Handler
	issuer *usersynctest.Issuer
	sender *clerktest.WebhookSender
	store  *countingStore
}

// countingStore counts the store calls that resolve authors.
type countingStore struct {
	chatStore
	getMany, get atomic.Int64
}

func (c *countingStore) GetMany(ctx context.Context, ids []string) (map[string]usersync.User, error) {
	c.getMany.Add(1)
	return c.chatStore.GetMany(ctx, ids)
}

func (c *countingStore) Get(ctx context.Context, id string) (usersync.User, error) {
	c.get.Add(1)
	return c.chatStore.Get(ctx, id)
}

func newTestApp(t *testing.T, databaseURL string) *testApp {
	t.Helper()
	return newTestAppWith(t, config{databaseURL: databaseURL})
}

// newTestAppWith is newTestApp with more of the environment: cfg's issuer
// and webhook secret are the test's.
func newTestAppWith(t *testing.T, cfg config) *testApp {
	t.Helper()
	return newReplica(t, cfg, usersynctest.NewIssuer(t), clerktest.NewWebhookSender(t))
}

// newReplica is newTestAppWith for a given issuer and webhook sender: two
// of them on one database are two replicas of one app.
func newReplica(t *testing.T, cfg config, iss *usersynctest.Issuer, sender *clerktest.WebhookSender) *testApp {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	cfg.issuer, cfg.secrets = iss.URL, sender.Secret
	if cfg.maxStale == 0 {
		// Never stale, however slow the machine: a read of the store that
		// stalls for a second would otherwise refuse every token with 503.
		cfg.maxStale = time.Hour
	}
	a, cleanup, err := newApp(context.Background(), cfg, "http://unused", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	cs := &countingStore{chatStore: a.store}
	if err := a.wire(cs); err != nil {
		t.Fatal(err)
	}
	return &testApp{app: a, h: a.routes(), issuer: iss, sender: sender, store: cs}
}

// backends are the stores every handler test runs on: memstore, SQLite,
// and PostgreSQL and MySQL when their DSN variables are set (in a schema
// or database of the test's own).
func backends(t *testing.T) map[string]string {
	t.Helper()
	urls := map[string]string{"memory": "memory:", "sqlite": filepath.Join(t.TempDir(), "chat.db")}
	for _, b := range testdb.Backends[1:] {
		if os.Getenv(b.Env) != "" {
			urls[b.Name] = databaseURL(t, b)
		}
	}
	return urls
}

func (ta *testApp) do(method, path, token string, body any) *httptest.ResponseRecorder {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	ta.h.ServeHTTP(w, req)
	return w
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", w.Body, err)
	}
	return v
}

// waitEnded waits until the replica refuses every session of the deleted
// user sub, as it does once it has read the ending their deletion
// recorded.
func (ta *testApp) waitEnded(t *testing.T, sub string) {
	t.Helper()
	id := &usersync.Identity{Issuer: ta.issuer.URL, Subject: sub}
	for deadline := time.Now().Add(30 * time.Second); !errors.Is(ta.ended.CheckSession(id), usersync.ErrSessionEnded); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sessions of the deleted %s were not refused in 30 s", sub)
		}
	}
}

func expect(t *testing.T, what string, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("%s: status %d (%s), want %d", what, w.Code, strings.TrimSpace(w.Body.String()), status)
	}
}

func TestEndpoints(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ta := newTestApp(t, url)
			ada := ta.issuer.Token(map[string]any{"sub": "user_ada", "name": "Ada"})
			bob := ta.issuer.Token(map[string]any{"sub": "user_bob", "name": "Bob"})
			expired := ta.issuer.Token(map[string]any{"sub": "user_ada", "exp": time.Now().Add(-time.Hour).Unix()})

			// Every API endpoint wants a valid token.
			for _, ep := range [][2]string{{"POST", "/api/users/store"}, {"GET", "/api/users/me"}, {"POST", "/api/messages"}, {"GET", "/api/messages"}, {"GET", "/api/messages/sent-count"}} {
				for _, tok := range []string{"", expired, "not.a.token"} {
					w := ta.do(ep[0], ep[1], tok, nil)
					expect(t, ep[0]+" "+ep[1]+" without a valid token", w, 401)
					if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer realm="chat"`) {
						t.Fatalf("no WWW-Authenticate on %s", ep[1])
					}
					if e := decode[map[string]string](t, w)["error"]; e != "unauthorized" || w.Header().Get("Content-Type") != "application/json" {
						t.Fatalf("401 body %q, %q: want JSON {\"error\": \"unauthorized\"}", w.Body, w.Header().Get("Content-Type"))
					}
				}
			}

			expect(t, "me before store", ta.do("GET", "/api/users/me", ada, nil), 404)
			// Sending as a user not stored yet stores them first.
			expect(t, "first message, before store", ta.do("POST", "/api/messages", ada, map[string]string{"body": "hello"}), 201)
			w := ta.do("GET", "/api/users/me", ada, nil)
			expect(t, "me after the first message", w, 200)
			id := decode[map[string]any](t, w)["id"]

			w = ta.do("POST", "/api/users/store", ada, nil)
			expect(t, "store", w, 200)
			if stored := decode[map[string]string](t, w)["id"]; stored != id {
				t.Fatalf("store gave %q, the first message stored %q", stored, id)
			}
			w = ta.do("POST", "/api/users/store", ada, nil)
			expect(t, "store again", w, 200)
			if again := decode[map[string]string](t, w)["id"]; again != id || id == "" {
				t.Fatalf("store is not idempotent: %q then %q", id, again)
			}
			w = ta.do("GET", "/api/users/me", ada, nil)
			expect(t, "me", w, 200)
			if me := decode[map[string]any](t, w); me["id"] != id || me["name"] != "Ada" {
				t.Fatalf("me = %v", me)
			}

			expect(t, "empty message", ta.do("POST", "/api/messages", ada, map[string]string{"body": "   "}), 400)
			expect(t, "oversized message", ta.do("POST", "/api/messages", ada, map[string]string{"body": strings.Repeat("x", 2001)}), 400)
			expect(t, "not JSON", ta.do("POST", "/api/messages", ada, "body=hi"), 400)
			expect(t, "second message", ta.do("POST", "/api/messages", ada, map[string]string{"body": "again"}), 201)
			expect(t, "bob stores", ta.do("POST", "/api/users/store", bob, nil), 200)
			expect(t, "bob writes", ta.do("POST", "/api/messages", bob, map[string]string{"body": "hi Ada"}), 201)

			before := ta.store.getMany.Load()
			w = ta.do("GET", "/api/messages", bob, nil)
			expect(t, "list", w, 200)
			msgs := decode[[]messageJSON](t, w)
			if len(msgs) != 3 || msgs[0].Body != "hello" || msgs[0].Author != "Ada" || msgs[2].Author != "Bob" || msgs[0].UserID != id {
				t.Fatalf("messages = %+v", msgs)
			}
			if n := ta.store.getMany.Load() - before; n != 1 || ta.store.get.Load() != 0 {
				t.Fatalf("listing 3 messages cost %d GetMany and %d Get calls, want 1 and 0", n, ta.store.get.Load())
			}
			w = ta.do("GET", "/api/messages?limit=1&after="+itoa(msgs[0].ID), bob, nil)
			if page := decode[[]messageJSON](t, w); len(page) != 1 || page[0].Body != "again" {
				t.Fatalf("second page = %+v", page)
			}
			expect(t, "bad limit", ta.do("GET", "/api/messages?limit=0", bob, nil), 400)
			w = ta.do("GET", "/api/messages/sent-count", ada, nil)
			expect(t, "count", w, 200)
			if c := decode[map[string]int](t, w)["count"]; c != 2 {
				t.Fatalf("count = %d, want 2", c)
			}

			// Clerk deletes Ada: her messages stay, authored by "deleted user".
			expect(t, "user.deleted", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", clerktest.UserDeletedEvent("user_ada"))), 200)
			msgs = decode[[]messageJSON](t, ta.do("GET", "/api/messages", bob, nil))
			if len(msgs) != 3 || msgs[0].Author != "deleted user" || msgs[2].Author != "Bob" {
				t.Fatalf("after delete: %+v", msgs)
			}
			// Her sessions ended with her: once the replica read that from
			// the store (within its Poll), her still valid token is refused.
			ta.waitEnded(t, "user_ada")
			expect(t, "me after delete", ta.do("GET", "/api/users/me", ada, nil), 401)
			expect(t, "store after delete (token still valid)", ta.do("POST", "/api/users/store", ada, nil), 401)
			expect(t, "send after delete", ta.do("POST", "/api/messages", ada, map[string]string{"body": "zombie"}), 401)

			w = ta.do("GET", "/", "", nil)
			expect(t, "page", w, 200)
			if !strings.Contains(w.Body.String(), "usersync chat") {
				t.Fatal("page has no title")
			}
		})
	}
}

// While the issuer's keys cannot be fetched, every token endpoint answers
// 503 with Retry-After and a JSON error, never 401: a single-page app
// signs its user out on a 401.
// TestReconcileFromTheBackendAPI: with CLERK_SECRET_KEY the app imports
// the instance's users at start, mapped as webhooks map them, and deletes
// the users the instance no longer lists, for good; and so its
// organizations and their memberships.
func TestReconcileFromTheBackendAPI(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			api := clerktest.NewAPI(t)
			at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			api.Put(
				clerktest.User{ID: "user_ada", FirstName: clerktest.Str("Ada"), LastName: clerktest.Str("Lovelace"), Email: "ada@example.com", ExternalID: "legacy-7", UpdatedAt: at},
				clerktest.User{ID: "user_bob", Username: clerktest.Str("bob"), UpdatedAt: at},
			)
			// And its organizations: Ada is an admin of Acme and a member of
			// Globex.
			for _, o := range []clerkfake.Organization{{ID: "org_2acme", Name: "Acme", Slug: "acme", UpdatedAt: at}, {ID: "org_2globex", Name: "Globex", Slug: "globex", UpdatedAt: at}} {
				if err := api.Fake.PutOrganization(o); err != nil {
					t.Fatal(err)
				}
			}
			if err := api.Fake.PutMembership(clerkfake.Membership{OrganizationID: "org_2acme", UserID: "user_ada", Role: "org:admin", UpdatedAt: at},
				clerkfake.Membership{OrganizationID: "org_2globex", UserID: "user_ada", Role: "org:member", UpdatedAt: at}); err != nil {
				t.Fatal(err)
			}
			ta := newTestAppWith(t, config{databaseURL: url, secretKey: api.SecretKey, apiURL: api.URL, reconcileEvery: "20ms"})
			api.SetJWKS(getBody(t, ta.issuer.JWKSURL())) // the secret key is the issuer's instance's
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			refused := make(chan error, 1)
			defer ta.reconcileInBackground(ctx, refused)()

			// Tokens that carry nothing but the subject: what /me shows
			// comes from the Backend API.
			ada := ta.issuer.Token(map[string]any{"sub": "user_ada"})
			bob := ta.issuer.Token(map[string]any{"sub": "user_bob"})
			w := eventually(t, func() *httptest.ResponseRecorder { return ta.do("GET", "/api/users/me", ada, nil) }, 200)
			me := decode[map[string]any](t, w)
			if me["name"] != "Ada Lovelace" || me["givenName"] != "Ada" || me["familyName"] != "Lovelace" || me["email"] != "ada@example.com" || me["emailVerified"] != true || me["externalId"] != "legacy-7" {
				t.Fatalf("me = %v", me)
			}
			if me := decode[map[string]any](t, eventually(t, func() *httptest.ResponseRecorder { return ta.do("GET", "/api/users/me", bob, nil) }, 200)); me["name"] != "bob" {
				t.Fatalf("bob = %v", me)
			}

			api.Remove("user_bob")
			// The reconcile deletes Bob for good and ends his sessions: once
			// this replica has read the ending (within its Poll), his still
			// valid token is refused. Until then it is answered 403 or 404,
			// so only the state after the ending is checked.
			ta.waitEnded(t, "user_bob")
			if _, err := ta.store.GetByTokenIdentifier(context.Background(), ta.issuer.URL+"|user_bob"); !errors.Is(err, usersync.ErrDeleted) {
				t.Fatalf("Bob in store after the reconcile: %v, want ErrDeleted", err)
			}
			expect(t, "store a deleted user", ta.do("POST", "/api/users/store", bob, nil), 401)
			expect(t, "send as a deleted user", ta.do("POST", "/api/messages", bob, map[string]string{"body": "hi"}), 401)
			expect(t, "me of a deleted user", ta.do("GET", "/api/users/me", bob, nil), 401)
			expect(t, "ada stays", ta.do("GET", "/api/users/me", ada, nil), 200)

			// The organizations come too, and go: Globex's deletion and Ada's
			// leaving Acme reach the store by the reconcile alone.
			orgsOfAda := func() string {
				w := ta.do("GET", "/api/orgs", ada, nil)
				expect(t, "orgs", w, 200)
				return strings.TrimSpace(w.Body.String())
			}
			waitFor := func(want string) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); orgsOfAda() != want; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("Ada's orgs = %s, want %s", orgsOfAda(), want)
					}
				}
			}
			waitFor(`[{"id":"org_2acme","name":"Acme","slug":"acme","role":"org:admin"},{"id":"org_2globex","name":"Globex","slug":"globex","role":"org:member"}]`)
			expect(t, "send to a reconciled room", ta.do("POST", "/api/orgs/org_2globex/messages", ada, map[string]string{"body": "hi"}), 201)
			api.Fake.RemoveOrganization("org_2globex")
			api.Fake.RemoveMembership("org_2acme", "user_ada")
			waitFor(`[]`)
			expect(t, "a room of an organization gone", ta.do("GET", "/api/orgs/org_2globex/messages", ada, nil), 404)
			expect(t, "a room Ada left", ta.do("GET", "/api/orgs/org_2acme/messages", ada, nil), 403)
		})
	}
}

// getBody returns the body of a GET of url.
func getBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// eventually calls do until it answers status, for up to 10 seconds.
func eventually(t *testing.T, do func() *httptest.ResponseRecorder, status int) *httptest.ResponseRecorder {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := do()
		if w.Code == status || time.Now().After(deadline) {
			expect(t, "eventually", w, status)
			return w
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKeysUnavailable(t *testing.T) {
	ta := newTestApp(t, "memory:")
	ta.issuer.SetJWKSMode(usersynctest.JWKS500)
	ta.issuer.Rotate() // a token of a key the verifier has never seen
	tok := ta.issuer.Token(map[string]any{"sub": "user_ada"})
	for _, ep := range [][2]string{{"POST", "/api/users/store"}, {"GET", "/api/users/me"}, {"POST", "/api/messages"}, {"GET", "/api/messages"},
		{"GET", "/api/orgs"}, {"GET", "/api/orgs/org_1/messages"}, {"POST", "/api/orgs/org_1/messages"}} {
		w := ta.do(ep[0], ep[1], tok, map[string]string{"body": "hi"})
		expect(t, ep[0]+" "+ep[1]+" while the keys are unavailable", w, 503)
		if w.Header().Get("Retry-After") == "" || decode[map[string]string](t, w)["error"] == "" {
			t.Fatalf("503 without Retry-After or JSON error: %q %q", w.Header(), w.Body)
		}
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func recorder(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestWebhookEndpoint(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ta := newTestApp(t, url)
			created := clerktest.UserEvent("user.created", clerktest.User{ID: "user_web", FirstName: clerktest.Str("Grace"), LastName: clerktest.Str("Hopper"), Email: "grace@example.com", UpdatedAt: time.Now()})
			expect(t, "applied", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", created)), 200)
			expect(t, "duplicate", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", created)), 200)
			bad := ta.sender.Request("/clerk-users-webhook", created)
			bad.Header.Set("svix-signature", "v1,AAAA")
			expect(t, "bad signature", recorder(ta.h, bad), 401)
			unsigned := httptest.NewRequest("POST", "/clerk-users-webhook", bytes.NewReader(created))
			expect(t, "no signature", recorder(ta.h, unsigned), 401)
			expect(t, "bad JSON", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", []byte(`{"type":`))), 400)
			expect(t, "too large", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", bytes.Repeat([]byte(" "), 2<<20))), 413)
			expect(t, "other event", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", []byte(`{"type":"session.created","data":{"id":"s"}}`))), 200)

			// The webhook's user and the same person's token are one row.
			webhookUser, err := ta.store.GetByTokenIdentifier(context.Background(), usersync.TokenIdentifier(ta.issuer.URL, "user_web"))
			if err != nil {
				t.Fatal(err)
			}
			tok := ta.issuer.Token(map[string]any{"sub": "user_web"})
			w := ta.do("POST", "/api/users/store", tok, nil)
			expect(t, "store", w, 200)
			if id := decode[map[string]string](t, w)["id"]; id != webhookUser.ID {
				t.Fatalf("token stored %q, webhook made %q: two rows for one person", id, webhookUser.ID)
			}
			if me := decode[map[string]any](t, ta.do("GET", "/api/users/me", tok, nil)); me["name"] != "Grace Hopper" || me["email"] != "grace@example.com" {
				t.Fatalf("me = %v: a token without claims must not wipe the webhook's profile", me)
			}
		})
	}
}

// Dev mode issues tokens to anyone: it must never start by accident.
func TestDevModeRefusesProductionSettings(t *testing.T) {
	tests := []struct {
		name string
		cfg  config
		want string // part of the error; "" to start
	}{
		{"nothing set: dev mode on localhost", config{addr: "localhost:8080"}, ""},
		{"loopback IPv4", config{addr: "127.0.0.1:0"}, ""},
		{"loopback IPv6", config{addr: "[::1]:8080"}, ""},
		{"webhook secret without issuer", config{addr: "localhost:8080", secrets: "whsec_x"}, "CLERK_WEBHOOK_SECRET"},
		{"publishable key without issuer", config{addr: "localhost:8080", key: "pk_live_x"}, "CLERK_PUBLISHABLE_KEY"},
		{"secret key without issuer", config{addr: "localhost:8080", secretKey: "sk_live_x"}, "CLERK_SECRET_KEY"},
		{"public address", config{addr: ":8080"}, "not a loopback address"},
		{"all interfaces", config{addr: "0.0.0.0:8080"}, "not a loopback address"},
		{"a LAN address", config{addr: "192.0.2.10:8080"}, "not a loopback address"},
		{"with an issuer anything goes", config{addr: ":8080", issuer: "https://x.clerk.accounts.dev", secrets: "whsec_x"}, ""},
	}
	for _, tt := range tests {
		err := checkDevMode(tt.cfg)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "CLERK_ISSUER")):
			t.Errorf("%s: err = %v, want one naming CLERK_ISSUER and %s", tt.name, err, tt.want)
		}
	}
}

// The session cookie authenticates the page's own JSON requests, never a
// form another site submits.
func TestCookiePostsNeedTheAppsOrigin(t *testing.T) {
	ta := newTestApp(t, "memory:")
	tok := ta.issuer.Token(map[string]any{"sub": "user_ada", "name": "Ada"})
	post := func(contentType, origin string) int {
		r := httptest.NewRequest("POST", "http://chat.example/api/messages", strings.NewReader(`{"body":"hi"}`))
		r.AddCookie(&http.Cookie{Name: "__session", Value: tok})
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Origin", origin)
		return recorder(ta.h, r).Code
	}
	if code := post("text/plain", "https://evil.example"); code != 403 {
		t.Fatalf("cross-site text/plain POST with the cookie: %d, want 403", code)
	}
	if code := post("application/json", "https://evil.example"); code != 403 {
		t.Fatalf("cross-site JSON POST with the cookie: %d, want 403", code)
	}
	if code := post("application/json", "http://chat.example"); code != 201 {
		t.Fatalf("same-origin JSON POST with the cookie: %d, want 201", code)
	}
}

// The config prints and logs without its secrets.
func TestConfigNeverPrintsSecrets(t *testing.T) {
	for _, url := range []string{"postgres://app:pg-pass-1@db:5432/chat", "mysql://app:my-pass-1@tcp(db:3306)/chat", "postgres://app:p@ss:w0rd-1@db/chat",
		"postgres://app:x@db/chat?sslmode=require&password=pg-pass-1", "postgres://db/chat?Password=pg-pass-1&sslpassword=w0rd-1&x=y"} {
		cfg := config{databaseURL: url, secrets: "whsec_c2VjcmV0LTE=", secretKey: "sk_test_key-1", issuer: "https://clerk.example.com"}
		var out bytes.Buffer
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
			fmt.Fprintf(&out, verb+"\n", cfg)
		}
		slog.New(slog.NewTextHandler(&out, nil)).Info("m", "cfg", cfg)
		for _, secret := range []string{"pass-1", "w0rd-1", "c2VjcmV0LTE=", "sk_test_key-1"} {
			if strings.Contains(out.String(), secret) {
				t.Fatalf("%q prints:\n%s", secret, out.String())
			}
		}
		if !strings.Contains(out.String(), "clerk.example.com") || !strings.Contains(out.String(), "[redacted]") {
			t.Fatalf("the rest is not printed:\n%s", out.String())
		}
	}
}
