package clerk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
)

// BenchmarkWebhook measures one signed ~2 KB user.updated delivery through
// ServeHTTP into memstore, next to its floors in the same run: Svix Verify
// alone, json.Unmarshal into the typed event alone, and the three together
// with a memstore upsert.
func BenchmarkWebhook(b *testing.B) {
	sender := clerktest.NewWebhookSender(b)
	const users = 2000
	bodies := make([][]byte, users)
	headers := make([]http.Header, users)
	meta := json.RawMessage(`{"department":"engineering","plan":"pro","notes":"` + strings.Repeat("x", 900) + `"}`)
	for i := range bodies {
		bodies[i] = clerktest.UserEvent("user.updated", clerktest.User{
			ID: fmt.Sprintf("user_%026d", i), FirstName: clerktest.Str("Ada"), LastName: clerktest.Str("Lovelace"),
			Username: clerktest.Str("ada"), Email: "ada@example.com", Phone: "+15550100",
			ImageURL:       "https://img.clerk.com/eyJ0eXBlIjoicHJveHkiLCJzcmMiOiJodHRwczovL2ltYWdlcy5jbGVyay5kZXYvb2F1dGhfZ2l0aHViL2ltZ18yIn0",
			PublicMetadata: meta, UpdatedAt: time.UnixMilli(1_700_000_000_000),
		})
		headers[i] = sender.Headers(fmt.Sprintf("msg_%d", i), bodies[i])
	}
	b.Logf("body size %d bytes", len(bodies[0]))
	wh, err := svix.NewWebhook(sender.Secret)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("floor/svix-verify", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := wh.Verify(bodies[i%users], headers[i%users]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("floor/json-decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var ev clerk.Event
			if err := json.Unmarshal(bodies[i%users], &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("floor/verify+decode+upsert", func(b *testing.B) {
		b.ReportAllocs()
		store := memstore.New()
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			body := bodies[i%users]
			if err := wh.Verify(body, headers[i%users]); err != nil {
				b.Fatal(err)
			}
			var ev clerk.Event
			if err := json.Unmarshal(body, &ev); err != nil {
				b.Fatal(err)
			}
			p, f := clerk.Profile(&ev.Data)
			if _, _, err := store.Upsert(ctx, usersync.Write{ID: "id-" + ev.Data.ID, TokenIdentifier: clerkIssuer + "|" + ev.Data.ID, Issuer: clerkIssuer, Subject: ev.Data.ID,
				Version: usersync.Version(ev.Data.UpdatedAt), Fields: f, Profile: p, At: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		p, err := clerk.New(clerk.Config{WebhookSecrets: []string{sender.Secret}, Issuer: clerkIssuer})
		if err != nil {
			b.Fatal(err)
		}
		s, err := usersync.New(usersync.Config{Store: memstore.New(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		// Deduplication off: every delivery takes the whole path, as the
		// floors do (the messages repeat every 2,000 iterations).
		h, err := usersync.NewWebhookHandler(s, p, usersync.WebhookConfig{DedupeSize: -1, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		reqs := make([]*http.Request, users)
		for i := range reqs {
			reqs[i] = httptest.NewRequest("POST", "/clerk-users-webhook", nil)
			reqs[i].Header = headers[i]
		}
		for i := 0; b.Loop(); i++ {
			r := reqs[i%users]
			r.Body = io.NopCloser(bytes.NewReader(bodies[i%users]))
			w := httptest.NewRecorder() // harness cost, not the handler's
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatal(w.Code, w.Body)
			}
		}
	})
}
