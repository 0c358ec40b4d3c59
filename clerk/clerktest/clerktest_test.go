package clerktest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
)

const issuer = "https://example.clerk.accounts.dev"

// The wrappers behave as clerktest always has: an API the library lists,
// checks against its PEM key and counts requests of, and a sender whose
// deliveries verify, at its own clock.
func TestAPI(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	at := time.UnixMilli(1_700_000_000_000)
	api.Put(
		clerktest.User{ID: "user_a", FirstName: clerktest.Str("A"), Email: "a@example.com", UpdatedAt: at},
		clerktest.User{ID: "user_b", Username: clerktest.Str("b"), CreatedAt: at, UpdatedAt: at.Add(time.Hour)},
	)
	if !strings.HasSuffix(api.URL, "/v1") || api.Fake.APIURL() != api.URL || api.Fake.SecretKey() != api.SecretKey || api.Fake.JWKSURL() != api.JWKSURL {
		t.Fatalf("URLs %q %q, fake %q", api.URL, api.JWKSURL, api.Fake.Issuer())
	}
	for _, tc := range []struct {
		name     string
		cfg      clerk.Config
		fail     int // 503s before the count
		want     int
		wantErr  error
		requests int // of the Backend API: /jwks, then /users/count
	}{
		{"its PEM key", clerk.Config{PublicKeyPEM: api.PublicKeyPEM()}, 0, 2, nil, 2},
		{"its JWKS", clerk.Config{JWKSURL: api.JWKSURL}, 0, 2, nil, 2},
		{"a 503 retried", clerk.Config{PublicKeyPEM: api.PublicKeyPEM()}, 1, 2, nil, 3},
		{"another instance's key", clerk.Config{PublicKeyPEM: clerktest.NewAPI(t).PublicKeyPEM()}, 0, 0, clerk.ErrWrongInstance, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Issuer, cfg.SecretKey, cfg.APIURL = issuer, api.SecretKey, api.URL
			p, err := clerk.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			l, err := p.UserList()
			if err != nil {
				t.Fatal(err)
			}
			before := api.Requests()
			api.Fail(tc.fail, http.StatusServiceUnavailable, 0)
			n, err := l.Count(ctx)
			if n != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Count = %d, %v; want %d, %v", n, err, tc.want, tc.wantErr)
			}
			if got := api.Requests() - before; got != tc.requests {
				t.Fatalf("%d requests, want %d", got, tc.requests)
			}
		})
	}

	// SetJWKS: the keys are another issuer's, and there is no PEM key.
	api.SetJWKS([]byte(`{"keys":[]}`))
	resp, err := http.Get(api.JWKSURL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"keys":[]}` {
		t.Fatalf("JWKS after SetJWKS: %s", b)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("PublicKeyPEM after SetJWKS did not panic")
		}
	}()
	api.PublicKeyPEM()
}

func TestWebhookSender(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	p, err := clerk.New(clerk.Config{Issuer: issuer, WebhookSecrets: []string{sender.Secret}})
	if err != nil {
		t.Fatal(err)
	}
	body := clerktest.UserEvent("user.created", clerktest.User{ID: "user_a", UpdatedAt: time.Now()})
	late := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
	late.Now = func() time.Time { return time.Now().Add(time.Hour) }
	received := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { received <- r.Header }))
	defer srv.Close()
	for _, tc := range []struct {
		name    string
		header  func() http.Header
		wantErr error
	}{
		{"Headers", func() http.Header { return sender.Headers("msg_1", body) }, nil},
		{"Request", func() http.Header { return sender.Request("/hook", body).Header }, nil},
		{"Send", func() http.Header { sender.Send(srv.URL, body); return <-received }, nil},
		{"signed an hour late", func() http.Header { return late.Headers("msg_1", body) }, clerk.ErrTimestampSkew},
		{"another secret", func() http.Header { return clerktest.NewWebhookSender(t).Headers("msg_1", body) }, clerk.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Verify(context.Background(), tc.header(), body); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify: %v, want %v", err, tc.wantErr)
			}
		})
	}
	if got := string(clerktest.UserDeletedEvent("user_a")); !strings.Contains(got, `"type":"user.deleted"`) || !strings.Contains(got, `"deleted":true`) {
		t.Fatalf("UserDeletedEvent = %s", got)
	}
}
