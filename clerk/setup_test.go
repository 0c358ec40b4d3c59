package clerk_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/usersynctest"
)

// Setup wires one instance: its session tokens reach RequireUser, its
// webhooks the same row.
func TestSetup(t *testing.T) {
	iss := usersynctest.NewIssuer(t) // stands in for the instance's Frontend API
	sender := clerktest.NewWebhookSender(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	syncer, webhook, err := clerk.Setup(ctx, memstore.New(), clerk.SetupConfig{Config: clerk.Config{Issuer: iss.URL, WebhookSecrets: []string{sender.Secret}}, Logger: quiet,
		EndedSessions: sessions.Config{MaxStale: time.Hour}}) // never stale, however slow the machine
	if err != nil {
		t.Fatal(err)
	}
	created := clerktest.UserEvent("user.created", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), UpdatedAt: time.Now()})
	if w := serve(webhook, sender.Request("/", created)); w.Code != 200 {
		t.Fatalf("webhook: %d %s", w.Code, w.Body)
	}
	var fromToken usersync.User
	h := syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fromToken, _ = usersync.UserFromContext(r.Context())
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+iss.Token(map[string]any{"sub": "user_1"}))
	if w := serve(h, r); w.Code != 200 || fromToken.Name != "Ada" {
		t.Fatalf("RequireUser: %d, user %+v", w.Code, fromToken)
	}
	if _, _, err := clerk.Setup(ctx, memstore.New(), clerk.SetupConfig{}); err == nil {
		t.Fatal("Setup without an issuer succeeded")
	}
}
