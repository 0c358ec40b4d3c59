package usersync_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

// The README's quick start: a token's identity and a webhook's event for
// the same person meet in one row, and a late event cannot bring a deleted
// user back.
func Example() {
	ctx := context.Background()
	syncer := usersync.New(memstore.New())
	const issuer = "https://example.clerk.accounts.dev"

	// From the token: what the middleware puts in the request context.
	id := &usersync.Identity{Issuer: issuer, Subject: "user_2abc", Name: "Ada", IssuedAt: time.Unix(1_700_000_000, 0)}
	fromToken, _ := syncer.StoreCurrentUser(ctx, id)

	// From the provider: a user.updated webhook with the full profile.
	fromWebhook, outcome, _ := syncer.Upsert(ctx, usersync.Update{
		Issuer: issuer, Subject: "user_2abc", Version: usersync.VersionOf(time.Unix(1_700_000_100, 0)),
		Fields: usersync.AllFields, Profile: usersync.Profile{Name: "Ada Lovelace", Email: "ada@example.com"},
	})
	fmt.Println(outcome, fromToken.ID == fromWebhook.ID, fromWebhook.Name)

	// A retry of an older event is stale: the rename is not rolled back.
	_, outcome, _ = syncer.Upsert(ctx, usersync.Update{
		Issuer: issuer, Subject: "user_2abc", Version: usersync.VersionOf(time.Unix(1_700_000_050, 0)),
		Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Old Name"},
	})
	fmt.Println(outcome)

	// Deletion is final, even for a token that is still valid.
	syncer.Delete(ctx, issuer, "user_2abc")
	_, err := syncer.StoreCurrentUser(ctx, id)
	fmt.Println(errors.Is(err, usersync.ErrDeleted))
	// Output:
	// updated true Ada Lovelace
	// stale
	// true
}

// Mount the middleware on a plain http.ServeMux and read the current user.
// (Here the identity is injected by hand; NewVerifier's Middleware does it
// from the bearer token.)
func ExampleSyncer_EnsureCurrent() {
	syncer := usersync.New(memstore.New())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		user, err := syncer.EnsureCurrent(r.Context())
		if err != nil {
			http.Error(w, "no user", http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "hello %s", user.Name)
	})
	withIdentity := func(next http.Handler) http.Handler { // stands in for verifier.Middleware
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := &usersync.Identity{Issuer: "https://issuer.example", Subject: "u1", Name: "Grace"}
			next.ServeHTTP(w, r.WithContext(usersync.NewContext(r.Context(), id)))
		})
	}
	w := httptest.NewRecorder()
	withIdentity(mux).ServeHTTP(w, httptest.NewRequest("GET", "/api/me", nil))
	fmt.Println(w.Body.String())
	// Output: hello Grace
}

// Mount a verifier's middleware on http.ServeMux: requests without a valid
// bearer token get 401 with an RFC 6750 challenge.
func ExampleVerifier_RequireIdentity() {
	ctx := context.Background()
	verifier, err := usersync.NewVerifier(ctx, usersync.VerifierConfig{
		Issuers: []usersync.IssuerConfig{{Issuer: "https://example.clerk.accounts.dev", JWKSURL: "http://127.0.0.1:1/jwks.json"}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer verifier.Close()
	syncer := usersync.New(memstore.New())

	mux := http.NewServeMux()
	mux.Handle("GET /api/me", verifier.RequireIdentity(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := syncer.EnsureCurrent(r.Context())
		if err != nil {
			http.Error(w, "no user", http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, user.ID)
	})))

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/api/me", nil))
	body, _ := io.ReadAll(w.Result().Body)
	fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"), string(body))
	// Output: 401 Bearer realm="usersync" unauthorized
}
