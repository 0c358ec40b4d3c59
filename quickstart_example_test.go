package usersync_test

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/memstore"
)

// The README's quick start, verbatim: an existing http.ServeMux app with
// Clerk. (It has no Output comment, so go test compiles it without running
// it: it would fetch a real Clerk instance's keys.)
func Example_quickStart() {
	syncer, webhook, err := clerk.Setup(context.Background(), memstore.New(), clerk.SetupConfig{Config: clerk.Config{
		Issuer:         "https://your-app.clerk.accounts.dev",       // your Frontend API URL
		WebhookSecrets: []string{os.Getenv("CLERK_WEBHOOK_SECRET")}, // whsec_...
	}})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /clerk-users-webhook", webhook) // public: Svix signs it
	mux.Handle("GET /api/me", syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := usersync.UserFromContext(r.Context()) // stored from the token if the webhook has not come yet
		json.NewEncoder(w).Encode(user)
	})))
	log.Fatal(http.ListenAndServe("localhost:8080", mux))
}
