package clerkfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
)

var quiet = slog.New(slog.DiscardHandler)

// serveFake serves a fake instance of cfg, its Issuer the server's URL, on
// loopback until the test ends.
func serveFake(t *testing.T, cfg clerkfake.Config) *clerkfake.Instance {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	cfg.Issuer = "http://" + srv.Listener.Addr().String()
	fake, err := clerkfake.New(cfg)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	srv.Config.Handler = fake
	srv.Start()
	t.Cleanup(srv.Close)
	return fake
}

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
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

// A token of the fake verifies with jwtverify, as an issuer and as the
// issuer of a clerk.Provider (which needs a session ID); one with another
// azp, expired, without sid or of another instance does not.
func TestTokenVerifies(t *testing.T) {
	ctx := context.Background()
	fake := serveFake(t, clerkfake.Config{})
	const origin = "http://localhost:3000"
	p, err := clerk.New(clerk.Config{Issuer: fake.Issuer(), AuthorizedParties: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	viaClerk, err := jwtverify.New(ctx, jwtverify.Config{Issuers: []jwtverify.Issuer{p.Issuer()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer viaClerk.Close()
	plain, err := jwtverify.New(ctx, jwtverify.Config{Issuers: []jwtverify.Issuer{{URL: fake.Issuer()}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	other, err := clerkfake.New(clerkfake.Config{Issuer: fake.Issuer()}) // same iss, another key
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour).Unix()

	mint := func(f *clerkfake.Instance, claims map[string]any) func(t *testing.T) string {
		return func(t *testing.T) string {
			tok, err := f.Token("user_ada", claims)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	for _, tc := range []struct {
		name      string
		token     func(t *testing.T) string
		clerkErr  error // of the clerk.Provider's issuer
		plainErr  error // of a bare jwtverify.Issuer
		wantAzp   string
		wantClaim string
		noSID     bool
	}{
		{name: "a session token", token: mint(fake, nil)},
		{name: "with the app's azp", token: mint(fake, map[string]any{"azp": origin}), wantAzp: origin},
		{name: "with a claim of a customised session token", token: mint(fake, map[string]any{"org_id": "org_1"}), wantClaim: `"org_id":"org_1"`},
		{name: "minted by POST /fake/tokens", token: func(t *testing.T) string {
			status, body := post(t, fake.Issuer()+"/fake/tokens?sub=user_ada&azp="+origin, "")
			var out struct{ Object, JWT string }
			if err := json.Unmarshal(body, &out); status != 200 || err != nil || out.Object != "token" {
				t.Fatalf("POST /fake/tokens: %d %s", status, body)
			}
			return out.JWT
		}, wantAzp: origin},
		{name: "with another azp", token: mint(fake, map[string]any{"azp": "https://evil.example"}), clerkErr: usersync.ErrInvalidToken},
		{name: "expired", token: mint(fake, map[string]any{"iat": past, "nbf": past, "exp": past + 60}), clerkErr: usersync.ErrTokenExpired, plainErr: usersync.ErrTokenExpired},
		{name: "without a session ID", token: mint(fake, map[string]any{"sid": nil}), clerkErr: usersync.ErrInvalidToken, noSID: true},
		{name: "of another instance", token: mint(other, nil), clerkErr: usersync.ErrInvalidToken, plainErr: usersync.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token(t)
			for _, v := range []struct {
				name string
				v    *jwtverify.Verifier
				want error
			}{{"clerk", viaClerk, tc.clerkErr}, {"jwtverify", plain, tc.plainErr}} {
				if tc.name == "with another azp" && v.name == "jwtverify" {
					continue // a bare issuer checks no azp
				}
				id, err := v.v.Verify(ctx, tok)
				if v.want != nil {
					if !errors.Is(err, v.want) {
						t.Fatalf("%s: %v, want %v", v.name, err, v.want)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", v.name, err)
				}
				if id.Issuer != fake.Issuer() || id.Subject != "user_ada" || id.AuthorizedParty != tc.wantAzp {
					t.Fatalf("%s: identity %q %q %q", v.name, id.Issuer, id.Subject, id.AuthorizedParty)
				}
				var c struct {
					V        int    `json:"v"`
					SID      string `json:"sid"`
					IAT, EXP int64
				}
				json.Unmarshal(id.Claims, &c)
				if c.V != 2 || strings.HasPrefix(c.SID, "sess_") == tc.noSID || id.Expiry.Sub(id.IssuedAt) != clerkfake.TokenLifetime {
					t.Fatalf("%s: claims %s", v.name, id.Claims)
				}
				if !strings.Contains(string(id.Claims), tc.wantClaim) {
					t.Fatalf("%s: claims %s, want %s", v.name, id.Claims, tc.wantClaim)
				}
			}
		})
	}
}

// clerk.UserList pages, counts and looks up the fake's users, from a users
// file and from Go, and a missing user is missing.
func TestUserList(t *testing.T) {
	ctx := context.Background()
	fake := serveFake(t, clerkfake.Config{})
	file, err := os.ReadFile("testdata/users.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.PutJSON(file); err != nil {
		t.Fatal(err)
	}
	// user_ada of the file has no dates: now. user_bob is newer still.
	fake.Put(clerkfake.User{ID: "user_bob", FirstName: clerkfake.Str("Bob"), Email: "bob@example.com", UpdatedAt: time.Now().Add(time.Hour)})
	p, err := clerk.New(clerk.Config{Issuer: fake.Issuer(), SecretKey: fake.SecretKey(), APIURL: fake.APIURL()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.UserList()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := l.Count(ctx); err != nil || n != 4 {
		t.Fatalf("Count = %d, %v; want 4", n, err)
	}
	oldestFirst := []string{"user_29w83sxmDNGwOuEthce5gg56FcC", "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "user_ada", "user_bob"}
	for _, tc := range []struct {
		offset, limit int
		want          []string
	}{
		{0, 2, oldestFirst[:2]},
		{2, 2, oldestFirst[2:]},
		{1, 500, oldestFirst[1:]},
		{4, 10, nil},
	} {
		page, err := l.Page(ctx, tc.offset, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range page {
			if w.Issuer != fake.Issuer() || w.Version <= 0 {
				t.Fatalf("write %+v", w)
			}
			got = append(got, w.Subject)
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("Page(%d, %d) = %q, want %q", tc.offset, tc.limit, got, tc.want)
		}
	}
	for _, tc := range []struct {
		id, name, email string
	}{
		{"user_29w83sxmDNGwOuEthce5gg56FcC", "Example Example", "example@example.org"},
		{"user_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "John Doe", ""},
		{"user_ada", "Ada Lovelace", "ada@example.com"},
		{"user_bob", "Bob", "bob@example.com"},
		{"user_missing", "", ""},
	} {
		w, err := l.Lookup(ctx, tc.id)
		switch {
		case err != nil:
			t.Fatalf("Lookup(%s): %v", tc.id, err)
		case tc.name == "" && w != nil:
			t.Fatalf("Lookup(%s) = %+v, want none (404)", tc.id, w)
		case tc.name != "" && (w == nil || w.Subject != tc.id || w.Profile.Name != tc.name || w.Profile.Email != tc.email):
			t.Fatalf("Lookup(%s) = %+v", tc.id, w)
		}
	}

	// The raw API, as Clerk answers it.
	for _, tc := range []struct {
		name, path, key string
		status          int
		want            string
	}{
		{"a user", "/v1/users/user_ada", fake.SecretKey(), 200, `"first_name":"Ada"`},
		{"a missing user", "/v1/users/user_missing", fake.SecretKey(), 404, `"code":"resource_not_found"`},
		{"the count", "/v1/users/count", fake.SecretKey(), 200, `{"object":"total_count","total_count":4}`},
		{"newest first by default", "/v1/users?limit=1", fake.SecretKey(), 200, `"id":"user_bob"`},
		{"by updated_at", "/v1/users?limit=1&order_by=%2Bupdated_at", fake.SecretKey(), 200, `"id":"user_29w83sxmDNGwOuEthce5gg56FcC"`},
		{"a bad limit", "/v1/users?limit=501", fake.SecretKey(), 422, "form_param_value_invalid"},
		{"another order", "/v1/users?order_by=-last_active_at", fake.SecretKey(), 422, "form_param_value_invalid"},
		{"the instance's keys", "/v1/jwks", fake.SecretKey(), 200, `"alg":"RS256"`},
		{"the Frontend API's keys, public", "/.well-known/jwks.json", "", 200, `"kty":"RSA"`},
		{"a wrong secret key", "/v1/users", "sk_test_wrong", 401, "authentication_invalid"},
		{"no secret key", "/v1/users/count", "", 401, "authentication_invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, fake.Issuer()+tc.path, nil)
			if tc.key != "" {
				r.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%d %s, want %d and %s", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
}

// A webhook the fake sends is accepted by the library's handler, which
// stores (or deletes) the user in memstore.
func TestWebhookReachesTheStore(t *testing.T) {
	ctx := t.Context()
	secret := clerkfake.NewWebhookSecret()
	store := memstore.New()
	var handler http.Handler
	ready := make(chan struct{}) // closed once handler is set
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		handler.ServeHTTP(w, r)
	}))
	defer hooks.Close()
	fake := serveFake(t, clerkfake.Config{WebhookSecret: secret, WebhookURL: hooks.URL + "/clerk-users-webhook"})
	_, h, err := clerk.Setup(ctx, store, clerk.SetupConfig{Config: clerk.Config{Issuer: fake.Issuer(), WebhookSecrets: []string{fake.WebhookSecret()}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	handler = h
	close(ready)
	if fake.WebhookSecret() != secret {
		t.Fatal("the webhook secret is not the one given")
	}
	tokenID := usersync.TokenIdentifier(fake.Issuer(), "user_ada")

	for _, tc := range []struct {
		name      string
		send      func() (int, error)
		wantName  string // "" for deleted
		wantCount int    // users the fake lists after
	}{
		{"user.created of a User", func() (int, error) {
			return fake.Send(ctx, "user.created", clerkfake.User{ID: "user_ada", FirstName: clerkfake.Str("Ada"), Email: "ada@example.com", UpdatedAt: time.Now()})
		}, "Ada", 1},
		{"user.updated of a User without UpdatedAt: newer", func() (int, error) {
			return fake.Send(ctx, "user.updated", clerkfake.User{ID: "user_ada", FirstName: clerkfake.Str("Ada"), LastName: clerkfake.Str("L."), Email: "ada@example.com"})
		}, "Ada L.", 1},
		{"user.updated of JSON without updated_at: newer", func() (int, error) {
			return fake.SendJSON(ctx, "user.updated", []byte(`{"id":"user_ada","first_name":"Ada","last_name":"Lovelace"}`))
		}, "Ada Lovelace", 1},
		{"user.updated over POST /fake/send", func() (int, error) {
			status, body := post(t, fake.Issuer()+"/fake/send", `{"type":"user.updated","user":{"id":"user_ada","first_name":"Augusta Ada","last_name":"King"}}`)
			var out struct {
				Sent   bool
				Status int
			}
			if err := json.Unmarshal(body, &out); status != 200 || err != nil || !out.Sent {
				t.Fatalf("POST /fake/send: %d %s", status, body)
			}
			return out.Status, nil
		}, "Augusta Ada King", 1},
		{"user.deleted", func() (int, error) {
			return fake.SendJSON(ctx, "user.deleted", []byte(`{"id":"user_ada"}`))
		}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, err := tc.send()
			if err != nil || status != 200 {
				t.Fatalf("sent: %d, %v", status, err)
			}
			u, err := store.GetByTokenIdentifier(ctx, tokenID)
			switch {
			case tc.wantName == "" && !errors.Is(err, usersync.ErrDeleted):
				t.Fatalf("after a delete: %+v, %v", u, err)
			case tc.wantName != "" && (err != nil || u.Name != tc.wantName):
				t.Fatalf("stored %+v, %v; want the name %q", u, err, tc.wantName)
			}
			if n := fake.Len(); n != tc.wantCount {
				t.Fatalf("the fake lists %d users, want %d", n, tc.wantCount)
			}
		})
	}

	// SendCreated: every listed user, oldest first.
	file, _ := os.ReadFile("testdata/users.json")
	if err := fake.PutJSON(file); err != nil {
		t.Fatal(err)
	}
	if n, err := fake.SendCreated(ctx); err != nil || n != 3 {
		t.Fatalf("SendCreated = %d, %v", n, err)
	}
	// user_ada's tombstone is final: two live users.
	if n, _ := store.Count(ctx); n != 2 {
		t.Fatalf("%d users stored, want 2", n)
	}
	u, err := store.GetByExternalID(ctx, fake.Issuer(), "567772")
	if err != nil || u.Subject != "user_29w83sxmDNGwOuEthce5gg56FcC" {
		t.Fatalf("GetByExternalID = %+v, %v", u, err)
	}

	// A receiver that refuses stops SendCreated.
	wrong := serveFake(t, clerkfake.Config{WebhookURL: hooks.URL + "/clerk-users-webhook"}) // another secret
	wrong.PutJSON(file)
	if n, err := wrong.SendCreated(ctx); n != 0 || err == nil || !strings.Contains(err.Error(), "answered 401") {
		t.Fatalf("SendCreated with another secret = %d, %v", n, err)
	}
}

// The /fake endpoints refuse what they cannot do, in Clerk's error shape.
func TestFakeEndpoints(t *testing.T) {
	fake := serveFake(t, clerkfake.Config{})
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // a webhook URL out of reach
	unreachable := serveFake(t, clerkfake.Config{WebhookURL: down.URL})
	for _, tc := range []struct {
		name, method, url, body string
		status                  int
		want                    string
	}{
		{"GET /fake/tokens", "GET", fake.Issuer() + "/fake/tokens?sub=user_ada", "", 405, "method_not_allowed"},
		{"an unknown endpoint", "POST", fake.Issuer() + "/fake/nope", "", 404, "resource_not_found"},
		{"a token without sub", "POST", fake.Issuer() + "/fake/tokens", "", 400, "sub must be a user ID"},
		{"a token of a bad sub", "POST", fake.Issuer() + "/fake/tokens?sub=user%2F..", "", 400, "sub must be a user ID"},
		{"send without JSON", "POST", fake.Issuer() + "/fake/send", "user_ada", 400, `want {\"type\"`},
		{"send without a user", "POST", fake.Issuer() + "/fake/send", `{"type":"user.created"}`, 400, `want {\"type\"`},
		{"send another type", "POST", fake.Issuer() + "/fake/send", `{"type":"session.created","user":{"id":"user_ada"}}`, 400, "is not user.created"},
		{"send a user without an id", "POST", fake.Issuer() + "/fake/send", `{"type":"user.created","user":{"first_name":"Ada"}}`, 400, `no \"id\"`},
		{"send a delete without an id", "POST", fake.Issuer() + "/fake/send", `{"type":"user.deleted","user":{}}`, 400, `needs the user's \"id\"`},
		{"send without a webhook URL: listed only", "POST", fake.Issuer() + "/fake/send", `{"type":"user.created","user":{"id":"user_ada"}}`, 200, `{"sent":false}`},
		{"send to a webhook out of reach", "POST", unreachable.Issuer() + "/fake/send", `{"type":"user.created","user":{"id":"user_ada"}}`, 502, "webhook_unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%d %s, want %d and %s", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
	if fake.Len() != 1 || fake.Requests() != 0 {
		t.Fatalf("the fake lists %d users and counts %d API requests, want 1 and 0", fake.Len(), fake.Requests())
	}
}

// PutJSON takes a users file, or refuses it whole.
func TestPutJSON(t *testing.T) {
	now := time.UnixMilli(1_750_000_000_000)
	for _, tc := range []struct {
		name, file string
		want       string // an error, or the JSON of user_a
	}{
		{"dates filled in", `[{"id":"user_a"}]`, `{"created_at":1750000000000,"id":"user_a","object":"user","updated_at":1750000000000}`},
		{"created_at from updated_at", `[{"id":"user_a","updated_at":5}]`, `{"created_at":5,"id":"user_a","object":"user","updated_at":5}`},
		{"unknown fields kept", `[{"id":"user_a","created_at":1,"updated_at":2,"banned":false,"locale":null}]`, `{"banned":false,"created_at":1,"id":"user_a","locale":null,"object":"user","updated_at":2}`},
		{"an empty list", `[]`, ""},
		{"not JSON", `users`, "error: not a JSON array"},
		{"an object", `{"id":"user_a"}`, "error: not a JSON array"},
		{"null", `null`, "error: null"},
		{"a string in the list", `["user_a"]`, "error: user #1: not a JSON object"},
		{"no id", `[{"first_name":"A"}]`, `error: user #1: no "id"`},
		{"an id with a slash", `[{"id":"user/a"}]`, `error: user #1: "id"`},
		{"a twice-listed id", `[{"id":"user_a"},{"id":"user_a"}]`, "error: user #2: id \"user_a\" is listed twice"},
		{"another object", `[{"id":"user_a","object":"session"}]`, `error: user #1: "object" is "session"`},
		{"a deleted user", `[{"id":"user_a","deleted":true}]`, "error: user #1: a deleted user"},
		{"a negative date", `[{"id":"user_a","updated_at":-1}]`, "error: user #1: a negative"},
		{"a field of the wrong type", `[{"id":"user_a","first_name":7}]`, "error: user #1: not a Clerk user object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, err := clerkfake.New(clerkfake.Config{Issuer: "http://127.0.0.1:1", Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			err = fake.PutJSON([]byte(tc.file))
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) || fake.Len() != 0 {
					t.Fatalf("PutJSON: %v, %d users; want an error with %q and none", err, fake.Len(), want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "/v1/users/user_a", nil)
			r.Header.Set("Authorization", "Bearer "+fake.SecretKey())
			fake.ServeHTTP(rec, r)
			if tc.want == "" {
				if fake.Len() != 0 || rec.Code != 404 {
					t.Fatalf("%d users, GET %d", fake.Len(), rec.Code)
				}
				return
			}
			if got := rec.Body.String(); rec.Code != 200 || got != tc.want {
				t.Fatalf("GET /v1/users/user_a: %d %s, want %s", rec.Code, got, tc.want)
			}
		})
	}
}

// New refuses what it cannot serve, and its errors show no secret.
func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  clerkfake.Config
		want string
	}{
		{"no issuer", clerkfake.Config{}, "is not an http or https URL"},
		{"an issuer with a path", clerkfake.Config{Issuer: "http://127.0.0.1:1/clerk"}, "without a path"},
		{"an issuer of another scheme", clerkfake.Config{Issuer: "ftp://127.0.0.1:1"}, "is not an http or https URL"},
		{"a live secret key", clerkfake.Config{Issuer: "http://127.0.0.1:1", SecretKey: "sk_live_realandsecret"}, "a live key"},
		{"a malformed webhook secret", clerkfake.Config{Issuer: "http://127.0.0.1:1", WebhookSecret: "whsec_not base64 secret!"}, "not whsec_ and 16 or more"},
		{"a short webhook secret", clerkfake.Config{Issuer: "http://127.0.0.1:1", WebhookSecret: "whsec_c2hvcnQ="}, "not whsec_ and 16 or more"},
		{"a webhook URL of another scheme", clerkfake.Config{Issuer: "http://127.0.0.1:1", WebhookURL: "file:///etc/passwd"}, "webhook URL"},
		{"a trailing slash", clerkfake.Config{Issuer: "http://127.0.0.1:1/"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, err := clerkfake.New(tc.cfg)
			if tc.want == "" {
				if err != nil || fake.Issuer() != "http://127.0.0.1:1" || !strings.HasPrefix(fake.SecretKey(), "sk_test_") || !strings.HasPrefix(fake.WebhookSecret(), "whsec_") {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "realandsecret") || strings.Contains(err.Error(), "secret!") {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

// After SetJWKS, the instance has no key of its own to sign with.
func TestSetJWKS(t *testing.T) {
	fake, err := clerkfake.New(clerkfake.Config{Issuer: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if pem, err := fake.PublicKeyPEM(); err != nil || !strings.HasPrefix(pem, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("PublicKeyPEM = %q, %v", pem, err)
	}
	fake.SetJWKS([]byte(`{"keys":[]}`))
	if _, err := fake.Token("user_a", nil); err == nil {
		t.Fatal("a token after SetJWKS")
	}
	if _, err := fake.PublicKeyPEM(); err == nil {
		t.Fatal("a PEM key after SetJWKS")
	}
	if _, err := fake.Token("", nil); err == nil {
		t.Fatal("a token without a subject")
	}
}
