package clerk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/memstore"
)

// jwtKey is an instance's "JWT public key" (CLERK_JWT_KEY): with it, the
// verifier fetches no keys.
const jwtKey = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzI34qHEcNse6R5zwCGcQKLDjKk+R
GXlvBSZbX/KUplzszM0JmSB79yXoAJdcHY7ylTkg9i/dhySeD2yxq0ASAQ==
-----END PUBLIC KEY-----`

// Wire an app to a Clerk instance in one call, mount its webhook and its
// current-user middleware, register a change-feed consumer, and run the
// background work with Run until the context ends. With a SecretKey
// (CLERK_SECRET_KEY), the users that session tokens create are completed
// from the Backend API too, and ReconcileEvery heals missed webhooks.
func ExampleWire() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // from Clerk's Webhooks page
	ctx, cancel := context.WithCancel(context.Background()) // in main: signal.NotifyContext
	defer cancel()
	app, err := clerk.Wire(ctx, memstore.New(), clerk.SetupConfig{
		Config: clerk.Config{
			Issuer:         "https://example.clerk.accounts.dev", // your Frontend API URL
			PublicKeyPEM:   jwtKey,
			WebhookSecrets: []string{secret},
			// SecretKey: os.Getenv("CLERK_SECRET_KEY"),
		},
		Logger: slog.New(slog.DiscardHandler), // of every part, as the meter and tracer providers
	})
	if err != nil {
		panic(err)
	}
	welcomed := make(chan usersync.Outcome, 1)
	app.Feed.Handle("welcome", func(ctx context.Context, c usersync.Change) error {
		if c.Outcome == usersync.Created {
			select { // send the welcome email: at least once, across replicas
			case welcomed <- c.Outcome:
			default: // delivered again: sent already
			}
		}
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST /clerk-users-webhook", app.Webhook)
	mux.Handle("GET /api/me", app.Syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := usersync.UserFromContext(r.Context())
		json.NewEncoder(w).Encode(user)
	})))
	ran := make(chan error, 1)
	go func() { ran <- app.Run(ctx) }() // in main: beside http.Server.Serve

	// Clerk delivers a user.created.
	body := `{"type":"user.created","object":"event","data":{"id":"user_2abc","first_name":"Ada","last_name":null,"updated_at":1700000000000}}`
	now := time.Now()
	wh, _ := svix.NewWebhook(secret)
	sig, _ := wh.Sign("msg_1", now, []byte(body))
	r := httptest.NewRequest("POST", "/clerk-users-webhook", strings.NewReader(body))
	r.Header.Set("svix-id", "msg_1")
	r.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	r.Header.Set("svix-signature", sig)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	fmt.Print(w.Code, " ", w.Body.String())

	fmt.Println("feed:", <-welcomed) // the consumer's goroutine may run before the answer is printed
	cancel()                         // SIGTERM
	fmt.Println("Run:", <-ran)       // everything has stopped
	// Output:
	// 200 {"outcome":"created"}
	// feed: created
	// Run: context canceled
}

// Mount a Clerk instance's webhook handler and receive a user.created,
// signed as Svix signs it. (In tests, clerktest.NewWebhookSender builds and
// signs such events for you.)
func ExampleNew() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // from Clerk's Webhooks page
	instance, err := clerk.New(clerk.Config{
		Issuer:         "https://example.clerk.accounts.dev", // your Frontend API URL
		WebhookSecrets: []string{secret},
	})
	if err != nil {
		panic(err)
	}
	store := memstore.New()
	syncer, _ := usersync.New(usersync.Config{Store: store, Logger: quiet})
	handler, _ := usersync.NewWebhookHandler(syncer, instance, usersync.WebhookConfig{Logger: quiet})
	mux := http.NewServeMux()
	mux.Handle("POST /clerk-users-webhook", handler)

	body := `{"type":"user.created","object":"event","data":{"id":"user_2abc","first_name":"Ada","last_name":null,` +
		`"primary_email_address_id":"idn_1","email_addresses":[{"id":"idn_1","email_address":"ada@example.com","verification":{"status":"verified"}}],` +
		`"updated_at":1700000000000}}`
	now := time.Now()
	wh, _ := svix.NewWebhook(secret)
	sig, _ := wh.Sign("msg_1", now, []byte(body))
	r := httptest.NewRequest("POST", "/clerk-users-webhook", strings.NewReader(body))
	r.Header.Set("svix-id", "msg_1")
	r.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	r.Header.Set("svix-signature", sig)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	fmt.Print(w.Code, " ", w.Body.String())

	u, _ := store.GetByTokenIdentifier(context.Background(), usersync.TokenIdentifier(instance.Issuer().URL, "user_2abc"))
	fmt.Println(u.Name, u.Email, u.EmailVerified)
	// Output:
	// 200 {"outcome":"created"}
	// Ada ada@example.com true
}
