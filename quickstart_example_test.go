package usersync_test

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

// The README's quick start, verbatim: an existing http.ServeMux app with
// Clerk. (It has no Output comment, so go test compiles it without running
// it: it would fetch a real Clerk instance's keys.)
func Example_quickStart() {
	ctx := context.Background()
	syncer := usersync.New(memstore.New()) // or sqlstore.New(db, sqlstore.SQLite), then Migrate

	verifier, err := usersync.NewVerifier(ctx, usersync.VerifierConfig{
		Issuers: []usersync.IssuerConfig{{Issuer: "https://your-app.clerk.accounts.dev"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()

	webhook, err := usersync.NewWebhookHandler(syncer, usersync.WebhookConfig{
		Secrets: []string{os.Getenv("CLERK_WEBHOOK_SECRET")}, // whsec_...
		Issuer:  "https://your-app.clerk.accounts.dev",
	})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("POST /clerk-users-webhook", webhook) // public: Svix signs it
	mux.Handle("GET /api/me", verifier.RequireIdentity(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := syncer.EnsureCurrent(r.Context()) // stores the user if the webhook has not arrived yet
		if err != nil {
			http.Error(w, "no user", http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(user)
	})))
	log.Fatal(http.ListenAndServe("localhost:8080", mux))
}
