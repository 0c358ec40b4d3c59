package clerk_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
)

// FuzzWebhookBody signs arbitrary bodies and delivers them: the decoder
// must answer 200 or 400 (never 5xx, never a panic) and store only users
// of well-formed user events.
func FuzzWebhookBody(f *testing.F) {
	for _, b := range [][]byte{
		clerktest.UserEvent("user.created", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), Email: "ada@example.com", UpdatedAt: time.Now()}),
		clerktest.UserEvent("user.updated", clerktest.User{ID: "user_1", Username: clerktest.Str("ada"), UpdatedAt: time.Now()}),
		clerktest.UserDeletedEvent("user_1"),
		[]byte(`{"type":"session.created","data":{"id":"sess_1"}}`),
		[]byte(`{"type":"user.created","data":{"id":"u","first_name":null,"last_name":null,"updated_at":1}}`),
		[]byte(`{"type":"user.updated","data":{"id":"u","public_metadata":null,"primary_email_address_id":"x","email_addresses":[{"id":"y"}],"updated_at":2}}`),
		[]byte(`not json`),
		[]byte(``),
	} {
		f.Add(b)
	}
	sender := clerktest.NewWebhookSender(f)
	h, _ := newWebhook(f, memstore.New(), sender, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		sender := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
		w := serve(h, sender.Request("/", body))
		if w.Code != 200 && w.Code != 400 && w.Code != 413 {
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}

// FuzzWebhookHeaders feeds arbitrary svix headers: nothing but a valid
// signature passes, and nothing panics.
func FuzzWebhookHeaders(f *testing.F) {
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	f.Add("msg_1", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v2,x v1a,y")
	f.Add("", "", "")
	f.Add("msg", "-1", "v1")
	f.Add("msg", "99999999999999999999", ",,,, v1,")
	f.Add("msg", "1614265330.5", "v1,"+strings.Repeat("A", 1000))
	p, err := clerk.New(clerk.Config{
		WebhookSecrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, Issuer: clerkIssuer,
		Now: func() time.Time { return time.Unix(1614265330, 0) },
	})
	if err != nil {
		f.Fatal(err)
	}
	s, err := usersync.New(usersync.Config{Store: memstore.New(), Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	h, err := usersync.NewWebhookHandler(s, p, usersync.WebhookConfig{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	const body = `{"test": 2432232314}`
	f.Fuzz(func(t *testing.T, id, ts, sig string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header["Svix-Id"] = []string{id}
		r.Header["Svix-Timestamp"] = []string{ts}
		r.Header["Svix-Signature"] = []string{sig}
		w := serve(h, r)
		valid := id == "msg_p5jXN8AQM9LWM0D4loKWxJek" && ts == "1614265330" && strings.Contains(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
		if w.Code != 401 && !valid {
			t.Fatalf("accepted id=%q ts=%q sig=%q", id, ts, sig)
		}
		if w.Code != 200 && w.Code != 401 && w.Code != 400 {
			t.Fatalf("status %d", w.Code)
		}
	})
}
