package usersync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
)

// The write rules: a newer write wins field by field, an older event
// cannot roll a newer one back, and nothing brings a deleted user back.
func Example() {
	ctx := context.Background()
	syncer, _ := usersync.New(usersync.Config{Store: memstore.New()})
	const issuer = "https://example.clerk.accounts.dev"

	// From the provider: a user.updated webhook carries the full profile,
	// versioned by its updated_at (ms).
	fromWebhook, outcome, _ := syncer.Upsert(ctx, usersync.Write{
		Issuer: issuer, Subject: "user_2abc", Version: 1_700_000_100_000,
		Fields: usersync.AllFields, Profile: usersync.Profile{Name: "Ada Lovelace", Email: "ada@example.com"},
	})
	fmt.Println(outcome, fromWebhook.Name, fromWebhook.TokenIdentifier)

	// A retry of an older event is stale: the rename is not rolled back.
	_, outcome, _ = syncer.Upsert(ctx, usersync.Write{
		Issuer: issuer, Subject: "user_2abc", Version: 1_700_000_050_000,
		Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Old Name"},
	})
	fmt.Println(outcome)

	// Deletion is final: the tombstone keeps the ID for your foreign keys,
	// and refuses every later write.
	tombstone, _, _ := syncer.Delete(ctx, issuer, "user_2abc")
	_, _, err := syncer.Upsert(ctx, usersync.Write{Issuer: issuer, Subject: "user_2abc", Version: 1_700_000_200_000, Fields: usersync.FieldName})
	fmt.Println(tombstone.ID == fromWebhook.ID, errors.Is(err, usersync.ErrDeleted))
	// Output:
	// created Ada Lovelace https://example.clerk.accounts.dev|user_2abc
	// stale
	// true true
}

// RequireUser verifies the bearer token, stores the user from it if the
// provider's webhook has not arrived yet, and hands the user to the
// handler. The issuer here is a stand-in with a static key; with Clerk,
// use clerk.New(...).Issuer() and nothing else changes.
func ExampleSyncer_RequireUser() {
	issuer, key := standInIssuer()
	verifier, _ := jwtverify.New(context.Background(), jwtverify.Config{Issuers: []jwtverify.Issuer{issuer}})
	defer verifier.Close()
	syncer, _ := usersync.New(usersync.Config{Store: memstore.New(), Extractor: verifier})

	mux := http.NewServeMux()
	mux.Handle("GET /api/me", syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := usersync.UserFromContext(r.Context())
		fmt.Fprintln(w, "hello", user.Name)
	})))
	mux.Handle("GET /", syncer.LoadUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, ok := usersync.UserFromContext(r.Context()); ok {
			fmt.Fprintln(w, "welcome back,", user.Name)
			return
		}
		fmt.Fprintln(w, "welcome, stranger")
	})))

	token := sign(key, jwt.MapClaims{"iss": issuer.URL, "sub": "user_2abc", "name": "Ada", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
	for _, c := range []struct{ path, token string }{{"/api/me", ""}, {"/api/me", token}, {"/", ""}, {"/", token}} {
		r := httptest.NewRequest("GET", c.path, nil)
		if c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	// Output:
	// 401 unauthorized
	// 200 hello Ada
	// 200 welcome, stranger
	// 200 welcome back, Ada
}

// RequireIdentity is for handlers that need the verified identity but no
// stored user; Claims holds every other claim of the token.
func ExampleSyncer_RequireIdentity() {
	issuer, key := standInIssuer()
	verifier, _ := jwtverify.New(context.Background(), jwtverify.Config{Issuers: []jwtverify.Issuer{issuer}})
	defer verifier.Close()
	syncer, _ := usersync.New(usersync.Config{Store: memstore.New(), Extractor: verifier})
	h := syncer.RequireIdentity(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := usersync.IdentityFromContext(r.Context())
		var clerk struct {
			SessionID string `json:"sid"`
		}
		json.Unmarshal(id.Claims, &clerk)
		fmt.Fprintln(w, id.Subject, clerk.SessionID)
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+sign(key, jwt.MapClaims{"iss": issuer.URL, "sub": "user_2abc", "sid": "sess_1", "exp": time.Now().Add(time.Minute).Unix()}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Print(w.Body.String())
	// Output: user_2abc sess_1
}

// OnChange is an in-process hook after every write that changed something:
// here, a cache of display names kept in step.
func ExampleConfig_onChange() {
	names := map[string]string{} // user ID -> name
	syncer, _ := usersync.New(usersync.Config{
		Store: memstore.New(),
		OnChange: func(ctx context.Context, c usersync.Change) {
			if c.Outcome == usersync.Deleted {
				delete(names, c.User.ID)
				return
			}
			names[c.User.ID] = c.User.Name
		},
	})
	ctx := context.Background()
	u, _, _ := syncer.Upsert(ctx, usersync.Write{Issuer: "https://id.example.com", Subject: "u1", Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Ada"}})
	fmt.Println(names[u.ID])
	syncer.Delete(ctx, "https://id.example.com", "u1")
	_, ok := names[u.ID]
	fmt.Println(ok)
	// Output:
	// Ada
	// false
}
