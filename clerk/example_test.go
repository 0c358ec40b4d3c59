package clerk_test

import (
	"context"
	"fmt"
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
