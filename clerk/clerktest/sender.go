// Package clerktest helps test code that talks to Clerk, in the spirit of
// net/http/httptest: it builds Clerk-shaped user events and signs them as
// Svix does (WebhookSender), and serves a fake Backend API user list (API).
// It is meant for tests only; its helpers fail the test (t.Fatal) instead
// of returning errors. It wraps package clerk/clerkfake, the same fakes
// without a *testing.T, for programs and docker-compose.
package clerktest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerkfake"
)

// WebhookSender signs webhook deliveries as Svix does, for testing a
// mounted webhook handler in-process (Request) or over the network (Send).
type WebhookSender struct {
	// Secret is the signing secret, "whsec_<base64>": give it to
	// clerk.Config.WebhookSecrets.
	Secret string
	// Now is the clock of the svix-timestamp. Default time.Now.
	Now func() time.Time

	t    testing.TB
	fake *clerkfake.WebhookSender
}

// NewWebhookSender returns a sender with a fresh random secret.
func NewWebhookSender(t testing.TB) *WebhookSender {
	t.Helper()
	return NewWebhookSenderWithSecret(t, clerkfake.NewWebhookSecret())
}

// NewWebhookSenderWithSecret returns a sender signing with secret.
func NewWebhookSenderWithSecret(t testing.TB, secret string) *WebhookSender {
	t.Helper()
	if secret == "" {
		t.Fatal("clerktest: an empty webhook secret")
	}
	fake, err := clerkfake.NewWebhookSender(secret)
	if err != nil {
		t.Fatal(err)
	}
	return &WebhookSender{Secret: secret, Now: time.Now, t: t, fake: fake}
}

// User describes a Clerk user: of a generated event, or listed by an API.
type User = clerkfake.User

// Str returns a pointer to s, for User's nullable fields.
func Str(s string) *string { return &s }

// UserEvent returns the JSON body of a user.created or user.updated event.
func UserEvent(eventType string, u User) []byte { return clerkfake.UserEvent(eventType, u) }

// UserDeletedEvent returns the JSON body of a user.deleted event.
func UserDeletedEvent(id string) []byte { return clerkfake.UserDeletedEvent(id) }

// Headers returns the Svix headers of a delivery of body with message ID
// id, signed at the sender's Now.
func (s *WebhookSender) Headers(id string, body []byte) http.Header {
	s.t.Helper()
	h, err := s.fake.Sign(id, s.Now(), body)
	if err != nil {
		s.t.Fatal(err)
	}
	return h
}

// Request returns a signed POST of body to target (a path or URL), with a
// fresh svix-id, for in-process tests with httptest.
func (s *WebhookSender) Request(target string, body []byte) *http.Request {
	s.t.Helper()
	r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	r.Header = s.Headers(s.fake.MessageID(), body)
	return r
}

// Send posts body, signed, to url and returns the response; the body is
// closed when the test ends.
func (s *WebhookSender) Send(url string, body []byte) *http.Response {
	s.t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	r.Header = s.Headers(s.fake.MessageID(), body)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { resp.Body.Close() })
	return resp
}
