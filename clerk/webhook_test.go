package clerk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/usersynctest"
)

const clerkIssuer = "https://example.clerk.accounts.dev"

var quiet = slog.New(slog.DiscardHandler)

// newWebhook returns the webhook handler of a Clerk instance whose secret
// the sender holds, over store, and the Syncer behind it.
func newWebhook(t testing.TB, store usersync.Store, sender *clerktest.WebhookSender, override func(*clerk.Config)) (http.Handler, usersync.Store) {
	t.Helper()
	cfg := clerk.Config{WebhookSecrets: []string{sender.Secret}, Issuer: clerkIssuer}
	if override != nil {
		override(&cfg)
	}
	p, err := clerk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := usersync.New(usersync.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h, err := usersync.NewWebhookHandler(s, p, usersync.WebhookConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return h, store
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// The two published Svix test vectors, checked at their own timestamps with
// a fixed clock, plus the known-bad signatures of the Svix suites.
func TestWebhookSvixVectors(t *testing.T) {
	vectors := []struct {
		name, secret, id, ts, body, sig string
		want                            int
	}{
		{"vector A", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 200},
		{"vector A without the whsec_ prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 200},
		{"vector B", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", `{"email":"test@example.com","username":"test_user"}`, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=", 200},
		{"wrong signature", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", 401},
		{"partial signature", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`, "v1,", 401},
		{"multi-signature header with one valid entry", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`,
			"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", 200},
		{"body re-serialised", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test":2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 401},
		{"derived: user.deleted", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"data":{"deleted":true,"id":"user_29w83sxmDNGwOuEthce5gg56FcC","object":"user"},"object":"event","type":"user.deleted"}`, "v1,Fz7ikoDQg/e/iG5+FJs3/qDnxGGKX1AlOEiZiE1huAU=", 200},
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			sec, _ := strconvAtoi(v.ts)
			p, err := clerk.New(clerk.Config{
				WebhookSecrets: []string{v.secret}, Issuer: clerkIssuer,
				Now: func() time.Time { return time.Unix(int64(sec), 0) },
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, prefix := range []string{"svix-", "webhook-"} {
				h := http.Header{}
				h.Set(prefix+"id", v.id)
				h.Set(prefix+"timestamp", v.ts)
				h.Set(prefix+"signature", v.sig)
				id, err := p.Verify(context.Background(), h, []byte(v.body))
				switch {
				case v.want == 200 && (err != nil || id != v.id):
					t.Fatalf("%s headers: Verify = %q, %v; want %q", prefix, id, err, v.id)
				case v.want == 401 && !errors.Is(err, clerk.ErrBadSignature):
					t.Fatalf("%s headers: err = %v, want ErrBadSignature", prefix, err)
				}
			}
		})
	}
}

func strconvAtoi(s string) (int, error) {
	var n int
	_, err := fmt.Sscan(s, &n)
	return n, err
}

func TestWebhookResponses(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	at := time.UnixMilli(1_700_000_000_000)
	created := clerktest.UserEvent("user.created", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), Email: "ada@example.com", UpdatedAt: at})
	tests := []struct {
		name    string
		request func(h http.Handler) *http.Request
		store   usersync.Store
		want    int
		outcome string
	}{
		{"applied", func(http.Handler) *http.Request { return sender.Request("/hook", created) }, nil, 200, "created"},
		{"the same event in a new message is stale", func(h http.Handler) *http.Request {
			serve(h, sender.Request("/hook", created))
			return sender.Request("/hook", created)
		}, nil, 200, "stale"},
		{"a redelivered message is a duplicate", func(h http.Handler) *http.Request {
			first := sender.Request("/hook", created)
			serve(h, first)
			again := httptest.NewRequest("POST", "/hook", bytes.NewReader(created))
			again.Header = first.Header.Clone()
			return again
		}, nil, 200, "duplicate"},
		{"a redelivered message with a forged signature is not a duplicate", func(h http.Handler) *http.Request {
			first := sender.Request("/hook", created)
			serve(h, first)
			again := httptest.NewRequest("POST", "/hook", bytes.NewReader(created))
			again.Header = first.Header.Clone()
			again.Header.Set("svix-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")
			return again
		}, nil, 401, "bad signature"},
		{"a message that failed is not remembered", func(h http.Handler) *http.Request {
			first := sender.Request("/hook", []byte(`{"type":"user.created","data":{"id":"u"}}`))
			serve(h, first) // 400: missing updated_at
			again := httptest.NewRequest("POST", "/hook", strings.NewReader(`{"type":"user.created","data":{"id":"u"}}`))
			again.Header = first.Header.Clone()
			return again
		}, nil, 400, "bad request"},
		{"aimed at a deleted user", func(h http.Handler) *http.Request {
			serve(h, sender.Request("/hook", clerktest.UserDeletedEvent("user_1")))
			return sender.Request("/hook", created)
		}, nil, 200, "user deleted"},
		{"unknown event type is ignored", func(http.Handler) *http.Request {
			return sender.Request("/hook", []byte(`{"type":"session.created","object":"event","data":{"id":"sess_1","status":"active","user_id":"user_1"}}`))
		}, nil, 200, "ignored"},
		{"unknown event with other data shapes is ignored", func(http.Handler) *http.Request {
			return sender.Request("/hook", []byte(`{"type":"organization.created","object":"event","data":{"id":"org_1","first_name":42}}`))
		}, nil, 200, "ignored"},
		{"malformed JSON", func(http.Handler) *http.Request {
			return sender.Request("/hook", []byte(`{"type":"user.created","data":`))
		}, nil, 400, "bad request"},
		{"wrong field types", func(http.Handler) *http.Request {
			return sender.Request("/hook", []byte(`{"type":"user.created","data":{"id":"user_1","first_name":42,"updated_at":1}}`))
		}, nil, 400, "bad request"},
		{"missing type", func(http.Handler) *http.Request { return sender.Request("/hook", []byte(`{"data":{"id":"user_1"}}`)) }, nil, 400, "bad request"},
		{"missing data.id", func(http.Handler) *http.Request {
			return sender.Request("/hook", []byte(`{"type":"user.deleted","data":{"deleted":true}}`))
		}, nil, 400, "bad request"},
		{"missing updated_at", func(http.Handler) *http.Request {
			return sender.Request("/hook", []byte(`{"type":"user.updated","data":{"id":"user_1"}}`))
		}, nil, 400, "bad request"},
		{"bad signature", func(http.Handler) *http.Request {
			r := sender.Request("/hook", created)
			r.Header.Set("svix-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")
			return r
		}, nil, 401, "bad signature"},
		{"body changed after signing", func(http.Handler) *http.Request {
			r := sender.Request("/hook", created)
			r.Body = io.NopCloser(bytes.NewReader(append(created, '\n')))
			return r
		}, nil, 401, "bad signature"},
		{"missing headers", func(http.Handler) *http.Request {
			r := sender.Request("/hook", created)
			r.Header.Del("svix-signature")
			return r
		}, nil, 401, "bad signature"},
		{"non-integer timestamp", func(http.Handler) *http.Request {
			r := sender.Request("/hook", created)
			r.Header.Set("svix-timestamp", "1700000000.5")
			return r
		}, nil, 401, "bad signature"},
		{"timestamp with a leading zero", func(http.Handler) *http.Request {
			r := sender.Request("/hook", created)
			r.Header.Set("svix-timestamp", "0"+r.Header.Get("svix-timestamp"))
			return r
		}, nil, 401, "bad signature"},
		{"timestamp with a plus sign", func(http.Handler) *http.Request {
			r := sender.Request("/hook", created)
			r.Header.Set("svix-timestamp", "+"+r.Header.Get("svix-timestamp"))
			return r
		}, nil, 401, "bad signature"},
		{"timestamp too old", func(http.Handler) *http.Request {
			old := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
			old.Now = func() time.Time { return time.Now().Add(-5*time.Minute - time.Second) }
			return old.Request("/hook", created)
		}, nil, 401, "bad signature"},
		{"timestamp too new", func(http.Handler) *http.Request {
			late := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
			late.Now = func() time.Time { return time.Now().Add(5*time.Minute + 2*time.Second) }
			return late.Request("/hook", created)
		}, nil, 401, "bad signature"},
		{"body too large", func(http.Handler) *http.Request {
			big := append([]byte(`{"type":"user.created","data":{"id":"u","x":"`), bytes.Repeat([]byte("a"), 2<<20)...)
			return sender.Request("/hook", append(big, `"}}`...))
		}, nil, 413, "body too large"},
		{"wrong method", func(http.Handler) *http.Request { return httptest.NewRequest("GET", "/hook", nil) }, nil, 405, "method not allowed"},
		{"store failure", func(http.Handler) *http.Request { return sender.Request("/hook", created) }, failingStore{memstore.New()}, 500, "store failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := tt.store
			if store == nil {
				store = memstore.New()
			}
			h, _ := newWebhook(t, store, sender, nil)
			w := serve(h, tt.request(h))
			if w.Code != tt.want || !strings.Contains(w.Body.String(), `"`+tt.outcome+`"`) {
				t.Fatalf("got %d %s, want %d %q", w.Code, w.Body, tt.want, tt.outcome)
			}
			if strings.Contains(w.Body.String(), sender.Secret) || len(w.Body.String()) > 64 {
				t.Fatalf("response body %q is not short or leaks", w.Body)
			}
		})
	}
}

// failingStore fails every write, as a database that is down does.
type failingStore struct{ usersync.Store }

func (failingStore) Upsert(context.Context, usersync.Write) (usersync.User, usersync.Outcome, error) {
	return usersync.User{}, usersync.Stale, errors.New("connection refused")
}

func TestWebhookSecretRotation(t *testing.T) {
	oldS, newS := clerktest.NewWebhookSender(t), clerktest.NewWebhookSender(t)
	h, _ := newWebhook(t, memstore.New(), oldS, func(c *clerk.Config) { c.WebhookSecrets = []string{oldS.Secret, newS.Secret} })
	body := clerktest.UserEvent("user.created", clerktest.User{ID: "user_1", UpdatedAt: time.Now()})
	for i, s := range []*clerktest.WebhookSender{oldS, newS, clerktest.NewWebhookSender(t)} {
		if i == 2 {
			if w := serve(h, s.Request("/", body)); w.Code != 401 {
				t.Fatalf("a third secret: %d", w.Code)
			}
			continue
		}
		if w := serve(h, s.Request("/", body)); w.Code != 200 {
			t.Fatalf("secret %d: %d", i, w.Code)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]clerk.Config{
		"empty secret": {Issuer: clerkIssuer, WebhookSecrets: []string{""}},
		"prefix only":  {Issuer: clerkIssuer, WebhookSecrets: []string{"whsec_"}},
		"not base64":   {Issuer: clerkIssuer, WebhookSecrets: []string{"whsec_!!!not-base64"}},
		"too short":    {Issuer: clerkIssuer, WebhookSecrets: []string{"whsec_YWJj"}},
		"no issuer":    {WebhookSecrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		"only a slash": {Issuer: "/", WebhookSecrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
	} {
		_, err := clerk.New(cfg)
		if !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
		if err != nil && len(cfg.WebhookSecrets) > 0 && len(cfg.WebhookSecrets[0]) > 8 && strings.Contains(err.Error(), cfg.WebhookSecrets[0]) {
			t.Errorf("%s: error leaks the secret: %v", name, err)
		}
	}
	// Without a secret, the instance still serves as a token issuer, and
	// every delivery fails to verify.
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer + "/"})
	if err != nil || p.Issuer().URL != clerkIssuer {
		t.Fatalf("New without secrets = %v, %v", p, err)
	}
	sender := clerktest.NewWebhookSender(t)
	if _, err := p.Verify(context.Background(), sender.Headers("msg_1", []byte("{}")), []byte("{}")); !errors.Is(err, clerk.ErrBadSignature) {
		t.Fatalf("Verify without secrets: err = %v", err)
	}
}

// Clerk's published payloads (its docs' user.created, its OpenAPI
// examples' user.updated and user.deleted) decode and map correctly.
func TestWebhookClerkPayloads(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	h, s := newWebhook(t, memstore.New(), sender, nil)
	ctx := context.Background()
	created := `{"data":{"birthday":"","created_at":1654012591514,"email_addresses":[{"email_address":"example@example.org","id":"idn_29w83yL7CwVlJXylYLxcslromF1","linked_to":[],"object":"email_address","verification":{"status":"verified","strategy":"ticket"}}],"external_accounts":[],"external_id":"567772","first_name":"Example","gender":"","id":"user_29w83sxmDNGwOuEthce5gg56FcC","image_url":"https://img.clerk.com/xxxxxx","last_name":"Example","last_sign_in_at":1654012591514,"object":"user","password_enabled":true,"phone_numbers":[],"primary_email_address_id":"idn_29w83yL7CwVlJXylYLxcslromF1","primary_phone_number_id":null,"primary_web3_wallet_id":null,"private_metadata":{},"profile_image_url":"https://www.gravatar.com/avatar?d=mp","public_metadata":{},"two_factor_enabled":false,"unsafe_metadata":{},"updated_at":1654012591835,"username":null,"web3_wallets":[]},"instance_id":"ins_123","object":"event","timestamp":1654012591835,"type":"user.created"}`
	if w := serve(h, sender.Request("/", []byte(created))); w.Code != 200 {
		t.Fatalf("user.created: %d %s", w.Code, w.Body)
	}
	u, err := s.GetByTokenIdentifier(ctx, clerkIssuer+"|user_29w83sxmDNGwOuEthce5gg56FcC")
	if err != nil || u.Name != "Example Example" || u.Email != "example@example.org" || !u.EmailVerified || u.PictureURL != "https://img.clerk.com/xxxxxx" || u.Version != 1654012591835 {
		t.Fatalf("user.created stored %+v, %v", u, err)
	}
	updated := `{"event_attributes":{"http_request":{"client_ip":"192.168.1.100","user_agent":"Mozilla/5.0"}},"object":"event","type":"user.updated","instance_id":"ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S","timestamp":1716883200,"data":{"object":"user","id":"user_2g7np7Hrk0SN6kj5EDMLDaKNL0S","external_id":null,"primary_email_address_id":"idn_2g7np7Hrk0SN6kj5EDMLDaKNL0S","primary_phone_number_id":null,"primary_web3_wallet_id":null,"username":"johndoe","first_name":"John","last_name":"Doe Updated","profile_image_url":"https://img.clerk.com/yyyyy","image_url":"https://img.clerk.com/yyyyy","has_image":true,"public_metadata":{"department":"engineering"},"private_metadata":null,"unsafe_metadata":{},"email_addresses":[],"phone_numbers":[],"web3_wallets":[],"passkeys":[],"password_enabled":true,"two_factor_enabled":true,"totp_enabled":true,"backup_code_enabled":false,"mfa_enabled_at":1716883200000,"mfa_disabled_at":null,"external_accounts":[],"saml_accounts":[],"enterprise_accounts":[],"last_sign_in_at":1716883400000,"banned":false,"locked":false,"lockout_expires_in_seconds":null,"verification_attempts_remaining":null,"updated_at":1716883500000,"created_at":1716883200000,"delete_self_enabled":true,"create_organization_enabled":true,"create_organizations_limit":null,"last_active_at":1716883500000,"legal_accepted_at":1716883200000}}`
	// An earlier event gave the user an email; the OpenAPI example's
	// primary_email_address_id dangles (email_addresses is empty), so the
	// stored email must survive it.
	earlier := clerktest.UserEvent("user.created", clerktest.User{ID: "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S", Email: "john@example.com", UpdatedAt: time.UnixMilli(1716883200000)})
	if w := serve(h, sender.Request("/", earlier)); w.Code != 200 {
		t.Fatalf("earlier user.created: %d %s", w.Code, w.Body)
	}
	if w := serve(h, sender.Request("/", []byte(updated))); w.Code != 200 {
		t.Fatalf("user.updated: %d %s", w.Code, w.Body)
	}
	u, err = s.GetByTokenIdentifier(ctx, clerkIssuer+"|user_2g7np7Hrk0SN6kj5EDMLDaKNL0S")
	if err != nil || u.Name != "John Doe Updated" || u.Email != "john@example.com" || u.Username != "johndoe" || string(u.Metadata) != `{"department":"engineering"}` {
		t.Fatalf("user.updated (dangling primary email) stored %+v, %v", u, err)
	}
	deleted := `{"event_attributes":{"http_request":{"client_ip":"192.168.1.100","user_agent":"Mozilla/5.0"}},"object":"event","type":"user.deleted","instance_id":"ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S","timestamp":1716883200,"data":{"object":"user","id":"user_2g7np7Hrk0SN6kj5EDMLDaKNL0S","deleted":true,"external_id":"ex_123456789"}}`
	if w := serve(h, sender.Request("/", []byte(deleted))); w.Code != 200 || !strings.Contains(w.Body.String(), "deleted") {
		t.Fatalf("user.deleted: %d %s", w.Code, w.Body)
	}
	if _, err := s.GetByTokenIdentifier(ctx, clerkIssuer+"|user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"); !errors.Is(err, usersync.ErrDeleted) {
		t.Fatalf("after user.deleted: %v", err)
	}
}

func TestClerkProfileNames(t *testing.T) {
	s := clerktest.Str
	tests := []struct {
		name string
		u    clerk.User
		want string
	}{
		{"first and last", clerk.User{FirstName: s(" Ada "), LastName: s("Lovelace")}, "Ada Lovelace"},
		{"null last name", clerk.User{FirstName: s("Ada")}, "Ada"},
		{"both null falls back to username", clerk.User{Username: s("ada")}, "ada"},
		{"then primary email", clerk.User{PrimaryEmailAddressID: s("e1"), EmailAddresses: []clerk.EmailAddress{{ID: "e0", EmailAddress: "x@y"}, {ID: "e1", EmailAddress: "ada@example.com"}}}, "ada@example.com"},
		{"nothing at all", clerk.User{}, ""},
	}
	for _, tt := range tests {
		if p, _ := clerk.Profile(&tt.u); p.Name != tt.want || strings.Contains(p.Name, "null") {
			t.Errorf("%s: name %q, want %q", tt.name, p.Name, tt.want)
		}
	}
}

func TestClerkProfileFields(t *testing.T) {
	s := clerktest.Str
	verified := &clerk.Verification{Status: "verified"}
	tests := []struct {
		name     string
		u        clerk.User
		fields   usersync.Fields
		email    string
		verified bool
		phone    string
		meta     string
	}{
		{"no primary email: carried, empty", clerk.User{}, usersync.AllFields, "", false, "", ""},
		{"primary email found and verified", clerk.User{PrimaryEmailAddressID: s("e1"), EmailAddresses: []clerk.EmailAddress{{ID: "e1", EmailAddress: "a@x", Verification: verified}}}, usersync.AllFields, "a@x", true, "", ""},
		{"primary email unverified", clerk.User{PrimaryEmailAddressID: s("e1"), EmailAddresses: []clerk.EmailAddress{{ID: "e1", EmailAddress: "a@x", Verification: &clerk.Verification{Status: "unverified"}}}}, usersync.AllFields, "a@x", false, "", ""},
		{"dangling primary email: not carried", clerk.User{PrimaryEmailAddressID: s("e9"), EmailAddresses: []clerk.EmailAddress{{ID: "e1", EmailAddress: "a@x"}}}, usersync.AllFields &^ (usersync.FieldEmail | usersync.FieldEmailVerified), "", false, "", ""},
		{"dangling primary phone: not carried", clerk.User{PrimaryPhoneNumberID: s("p9")}, usersync.AllFields &^ usersync.FieldPhoneNumber, "", false, "", ""},
		{"primary phone", clerk.User{PrimaryPhoneNumberID: s("p1"), PhoneNumbers: []clerk.PhoneNumber{{ID: "p1", PhoneNumber: "+1555"}}}, usersync.AllFields, "", false, "+1555", ""},
		{"null metadata", clerk.User{PublicMetadata: []byte("null")}, usersync.AllFields, "", false, "", ""},
		{"metadata", clerk.User{PublicMetadata: []byte(`{"a":1}`)}, usersync.AllFields, "", false, "", `{"a":1}`},
	}
	for _, tt := range tests {
		p, f := clerk.Profile(&tt.u)
		if f != tt.fields || p.Email != tt.email || p.EmailVerified != tt.verified || p.PhoneNumber != tt.phone || string(p.Metadata) != tt.meta {
			t.Errorf("%s: got %+v fields %b", tt.name, p, f)
		}
	}
}

// Every order of created, updated, updated, deleted for one user ends
// deleted; every order of created, updated, updated ends at the last
// update.
func TestWebhookEveryPermutationConverges(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	at := time.UnixMilli(1_700_000_000_000)
	ev := func(typ, name string, d time.Duration) []byte {
		return clerktest.UserEvent(typ, clerktest.User{ID: "user_1", FirstName: clerktest.Str(name), UpdatedAt: at.Add(d)})
	}
	base := [][]byte{ev("user.created", "A", 0), ev("user.updated", "B", time.Second), ev("user.updated", "C", 2*time.Second)}
	for _, withDelete := range []bool{false, true} {
		events := base
		if withDelete {
			events = append(append([][]byte(nil), base...), clerktest.UserDeletedEvent("user_1"))
		}
		for _, perm := range permutations(len(events)) {
			h, s := newWebhook(t, memstore.New(), sender, nil)
			for _, i := range perm {
				if w := serve(h, sender.Request("/", events[i])); w.Code != 200 {
					t.Fatalf("perm %v: event %d: %d %s", perm, i, w.Code, w.Body)
				}
			}
			u, err := s.GetByTokenIdentifier(context.Background(), clerkIssuer+"|user_1")
			switch {
			case withDelete && !errors.Is(err, usersync.ErrDeleted):
				t.Fatalf("perm %v: deleted user is back: %+v %v", perm, u, err)
			case !withDelete && (err != nil || u.Name != "C"):
				t.Fatalf("perm %v: name %q, %v; want C", perm, u.Name, err)
			}
		}
	}
}

func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int(nil), p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// A shuffled, 20%-duplicated stream of 2,000 events over 200 users,
// delivered over HTTP by 8 goroutines, ends equal to the in-order fold.
func TestWebhookShuffledStreamOverHTTP(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	store := memstore.New()
	h, _ := newWebhook(t, store, sender, func(c *clerk.Config) { c.Issuer = usersynctest.StreamIssuer })
	srv := httptest.NewServer(h)
	defer srv.Close()

	events := usersynctest.Stream(rand.New(rand.NewPCG(5, 6)), 200, 2000)
	// Webhooks carry every field: widen each event to a full snapshot of
	// its version.
	bodies := make([][]byte, len(events))
	full := make([]usersynctest.Event, len(events))
	for i, e := range events {
		if e.Delete {
			bodies[i], full[i] = clerktest.UserDeletedEvent(e.Subject), e
			continue
		}
		name := fmt.Sprintf("Name %d", e.Version)
		bodies[i] = clerktest.UserEvent("user.updated", clerktest.User{ID: e.Subject, FirstName: &name, Email: e.Subject + "@example.com", UpdatedAt: time.UnixMilli(int64(e.Version))})
		p, f := clerk.Profile(mustDecode(t, bodies[i]))
		full[i] = usersynctest.Event{Subject: e.Subject, Version: e.Version, Fields: f, Profile: p}
	}
	order := make([]int, 0, len(events)*6/5)
	for i := range events {
		order = append(order, i)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range len(events) / 5 {
		order = append(order, r.IntN(len(events)))
	}
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := w; k < len(order); k += 8 {
				if resp := sender.Send(srv.URL, bodies[order[k]]); resp.StatusCode != 200 {
					t.Errorf("delivery: %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if diff := usersynctest.CompareState(context.Background(), store, usersynctest.Fold(full)); diff != "" {
		t.Fatal(diff)
	}
}

func mustDecode(t *testing.T, body []byte) *clerk.User {
	t.Helper()
	var ev clerk.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev.Data
}

// Metadata that Go accepts but a database refuses (a lone surrogate, a
// number beyond PostgreSQL's range, nesting MariaDB refuses) must not
// block the rest of a signed update: the rename and email land, the event
// is answered 200, and nothing is retried forever.
func TestWebhookBadMetadataDoesNotBlockTheUpdate(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	h, s := newWebhook(t, memstore.New(), sender, nil)
	at := time.UnixMilli(1_700_000_000_000)
	created := clerktest.UserEvent("user.created", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), Email: "ada@example.com",
		PublicMetadata: json.RawMessage(`{"plan":"free"}`), UpdatedAt: at})
	if w := serve(h, sender.Request("/", created)); w.Code != 200 {
		t.Fatalf("created: %d %s", w.Code, w.Body)
	}
	for i, meta := range []string{`{"n":1e200000}`, strings.Repeat("[", 40) + strings.Repeat("]", 40), `{"a":"\u0000"}`} {
		at = at.Add(time.Second)
		name := fmt.Sprint("Ada ", i)
		updated := clerktest.UserEvent("user.updated", clerktest.User{ID: "user_1", FirstName: &name, Email: fmt.Sprintf("ada%d@example.com", i),
			PublicMetadata: json.RawMessage(meta), UpdatedAt: at})
		if w := serve(h, sender.Request("/", updated)); w.Code != 200 {
			t.Fatalf("update %d: %d %s, want 200", i, w.Code, w.Body)
		}
		u, err := s.GetByTokenIdentifier(context.Background(), clerkIssuer+"|user_1")
		if err != nil || u.Name != name || u.Email != fmt.Sprintf("ada%d@example.com", i) || string(u.Metadata) != `{"plan":"free"}` {
			t.Fatalf("after update %d: %+v, %v", i, u.Profile, err)
		}
	}
	// A lone surrogate is not refused: it is stored as U+FFFD.
	at = at.Add(time.Second)
	surrogate := clerktest.UserEvent("user.updated", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), PublicMetadata: json.RawMessage(`{"a":"\ud800"}`), UpdatedAt: at})
	if w := serve(h, sender.Request("/", surrogate)); w.Code != 200 {
		t.Fatalf("lone surrogate: %d %s", w.Code, w.Body)
	}
	if u, _ := s.GetByTokenIdentifier(context.Background(), clerkIssuer+"|user_1"); string(u.Metadata) != `{"a":"`+"\ufffd"+`"}` {
		t.Fatalf("lone surrogate stored as %s", u.Metadata)
	}
}

// An updated_at far in the future would freeze every field it wrote: the
// delivery is refused as bad data (400), and a later correct one applies.
func TestWebhookVersionFromTheFuture(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	h, _ := newWebhook(t, memstore.New(), sender, nil)
	future := clerktest.UserEvent("user.updated", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Frozen"), UpdatedAt: time.Now().Add(24 * time.Hour)})
	if w := serve(h, sender.Request("/", future)); w.Code != 400 {
		t.Fatalf("updated_at a day ahead: %d %s, want 400", w.Code, w.Body)
	}
	now := clerktest.UserEvent("user.updated", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), UpdatedAt: time.Now()})
	if w := serve(h, sender.Request("/", now)); w.Code != 200 || !strings.Contains(w.Body.String(), "created") {
		t.Fatalf("then a current one: %d %s", w.Code, w.Body)
	}
}
