package usersync_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

// inHouse is the whole Provider of an in-house identity provider that
// POSTs JSON such as
//
//	{"type":"user.saved","id":"42","name":"Ada","email":"ada@example.com","updated_at":1700000000000}
//
// with a delivery ID, the same for every retry, in X-Delivery, and a hex
// HMAC-SHA256 of "<delivery ID>.<body>" in X-Signature: the ID is signed
// too, so that no one can replay a body under other IDs.
type inHouse struct {
	secret []byte
	issuer string // the iss of its tokens, so that both ways in meet
}

func (p inHouse) Verify(_ context.Context, h http.Header, body []byte) (string, error) {
	id := h.Get("X-Delivery")
	if !hmac.Equal([]byte(h.Get("X-Signature")), []byte(p.mac(id, body))) {
		return "", errors.New("in-house: bad signature")
	}
	return id, nil
}

func (p inHouse) mac(id string, body []byte) string {
	mac := hmac.New(sha256.New, p.secret)
	mac.Write([]byte(id + "."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func (p inHouse) Decode(_ context.Context, body []byte) (usersync.Event, error) {
	var m struct {
		Type, ID, Name, Email string
		UpdatedAt             int64 `json:"updated_at"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return usersync.Event{}, fmt.Errorf("in-house: %w", err)
	}
	w := &usersync.Write{Issuer: p.issuer, Subject: m.ID}
	switch m.Type {
	case "user.saved":
		w.Version = usersync.Version(m.UpdatedAt)
		w.Fields = usersync.FieldName | usersync.FieldEmail
		w.Profile = usersync.Profile{Name: m.Name, Email: m.Email}
		return usersync.Event{Type: m.Type, Write: w}, nil
	case "user.removed":
		return usersync.Event{Type: m.Type, Write: w, Delete: true}, nil
	}
	return usersync.Event{Type: m.Type}, nil // not about a user
}

// sign returns a signed delivery of body, as the in-house provider sends it.
func (p inHouse) sign(id, body string) *http.Request {
	r := httptest.NewRequest("POST", "/webhooks/in-house", strings.NewReader(body))
	r.Header.Set("X-Signature", p.mac(id, []byte(body)))
	r.Header.Set("X-Delivery", id)
	return r
}

// A provider other than Clerk takes a type with two methods: Verify
// authenticates the raw delivery, Decode says what it means. Every
// guarantee of the webhook handler (verify before parsing, deduplication,
// versioned writes, tombstones, status codes) comes with it.
func ExampleProvider() {
	provider := inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}
	syncer, _ := usersync.New(usersync.Config{Store: memstore.New(), Logger: quiet})
	handler, _ := usersync.NewWebhookHandler(syncer, provider, usersync.WebhookConfig{
		Logger: quiet,
		OnEvent: func(ctx context.Context, ev usersync.Event) error {
			fmt.Println("other event:", ev.Type, string(ev.Raw))
			return nil
		},
	})
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/in-house", handler)

	deliver := func(r *http.Request) {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	saved := `{"type":"user.saved","id":"42","name":"Ada","email":"ada@example.com","updated_at":1700000000000}`
	deliver(provider.sign("d1", saved))
	deliver(provider.sign("d1", saved)) // a retry of the same delivery
	forged := provider.sign("d2", saved)
	forged.Header.Set("X-Signature", "00")
	deliver(forged)
	deliver(provider.sign("d3", `{"type":"team.created","id":"t1"}`))
	deliver(provider.sign("d4", `{"type":"user.removed","id":"42"}`))
	// Output:
	// 200 {"outcome":"created"}
	// 200 {"outcome":"duplicate"}
	// 401 {"outcome":"bad signature"}
	// other event: team.created {"type":"team.created","id":"t1"}
	// 200 {"outcome":"handled"}
	// 200 {"outcome":"deleted"}
}
