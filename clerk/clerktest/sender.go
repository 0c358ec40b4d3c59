// Package clerktest helps test code that talks to Clerk, in the spirit of
// net/http/httptest: it builds Clerk-shaped user events and signs them as
// Svix does (WebhookSender), and serves a fake Backend API user list (API). It is meant for tests only; its helpers fail the test
// (t.Fatal) instead of returning errors.
package clerktest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/usersync/usersync/clerk"
)

// WebhookSender signs webhook deliveries as Svix does, for testing a
// mounted webhook handler in-process (Request) or over the network (Send).
type WebhookSender struct {
	// Secret is the signing secret, "whsec_<base64>": give it to
	// clerk.Config.WebhookSecrets.
	Secret string
	// Now is the clock of the svix-timestamp. Default time.Now.
	Now func() time.Time

	t  testing.TB
	wh *svix.Webhook
	n  atomic.Int64
}

// NewWebhookSender returns a sender with a fresh random secret.
func NewWebhookSender(t testing.TB) *WebhookSender {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	return NewWebhookSenderWithSecret(t, "whsec_"+base64.StdEncoding.EncodeToString(key))
}

// NewWebhookSenderWithSecret returns a sender signing with secret.
func NewWebhookSenderWithSecret(t testing.TB, secret string) *WebhookSender {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatalf("clerktest: bad secret: %v", err)
	}
	return &WebhookSender{Secret: secret, Now: time.Now, t: t, wh: wh}
}

// User describes a Clerk user: of a generated event, or listed by an API.
type User struct {
	ID                  string
	FirstName, LastName *string // nil sends JSON null, as Clerk does
	Username            *string
	Email               string // primary email, verified unless EmailUnverified
	EmailUnverified     bool
	Phone               string
	ImageURL            string
	ExternalID          string // "" sends JSON null
	PublicMetadata      json.RawMessage
	LastSignInAt        time.Time // zero sends JSON null
	// CreatedAt is when Clerk created the user; zero means UpdatedAt.
	CreatedAt time.Time
	UpdatedAt time.Time // the version
}

// Str returns a pointer to s, for User's nullable fields.
func Str(s string) *string { return &s }

// UserEvent returns the JSON body of a user.created or user.updated event.
func UserEvent(eventType string, u User) []byte {
	return event(eventType, u.clerk(), u.UpdatedAt)
}

// clerk returns u as Clerk's user object.
func (u User) clerk() clerk.User {
	d := clerk.User{
		Object: "user", ID: u.ID, Username: u.Username, FirstName: u.FirstName, LastName: u.LastName,
		ImageURL: u.ImageURL, PublicMetadata: u.PublicMetadata,
		EmailAddresses: []clerk.EmailAddress{}, PhoneNumbers: []clerk.PhoneNumber{},
		CreatedAt: u.UpdatedAt.UnixMilli(), UpdatedAt: u.UpdatedAt.UnixMilli(),
		PrivateMetadata: json.RawMessage(`{}`), UnsafeMetadata: json.RawMessage(`{}`),
	}
	if !u.CreatedAt.IsZero() {
		d.CreatedAt = u.CreatedAt.UnixMilli()
	}
	if u.ExternalID != "" {
		d.ExternalID = Str(u.ExternalID)
	}
	if !u.LastSignInAt.IsZero() {
		ms := u.LastSignInAt.UnixMilli()
		d.LastSignInAt = &ms
	}
	if d.PublicMetadata == nil {
		d.PublicMetadata = json.RawMessage(`{}`)
	}
	if u.Email != "" {
		status := "verified"
		if u.EmailUnverified {
			status = "unverified"
		}
		d.PrimaryEmailAddressID = Str("idn_" + u.ID)
		d.EmailAddresses = append(d.EmailAddresses, clerk.EmailAddress{ID: "idn_" + u.ID, EmailAddress: u.Email, Verification: &clerk.Verification{Status: status, Strategy: "email_code"}})
	}
	if u.Phone != "" {
		d.PrimaryPhoneNumberID = Str("idn_phone_" + u.ID)
		d.PhoneNumbers = append(d.PhoneNumbers, clerk.PhoneNumber{ID: "idn_phone_" + u.ID, PhoneNumber: u.Phone, Verification: &clerk.Verification{Status: "verified"}})
	}
	return d
}

// UserDeletedEvent returns the JSON body of a user.deleted event.
func UserDeletedEvent(id string) []byte {
	return event("user.deleted", clerk.User{Object: "user", ID: id, Deleted: true}, time.Now())
}

func event(eventType string, d clerk.User, at time.Time) []byte {
	b, err := json.Marshal(clerk.Event{Type: eventType, Object: "event", Timestamp: at.UnixMilli(), InstanceID: "ins_test", Data: d})
	if err != nil {
		panic(err) // cannot happen: every field marshals
	}
	return b
}

// Headers returns the Svix headers of a delivery of body with message ID
// id, signed at the sender's Now.
func (s *WebhookSender) Headers(id string, body []byte) http.Header {
	s.t.Helper()
	now := s.Now()
	sig, err := s.wh.Sign(id, now, body)
	if err != nil {
		s.t.Fatal(err)
	}
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("svix-signature", sig)
	h.Set("Content-Type", "application/json")
	return h
}

// Request returns a signed POST of body to target (a path or URL), with a
// fresh svix-id, for in-process tests with httptest.
func (s *WebhookSender) Request(target string, body []byte) *http.Request {
	s.t.Helper()
	r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	r.Header = s.Headers(s.newID(), body)
	return r
}

// newID returns a fresh svix-id.
func (s *WebhookSender) newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "msg_" + strconv.FormatInt(s.n.Add(1), 10) + "_" + base64.RawURLEncoding.EncodeToString(b)
}

// Send posts body, signed, to url and returns the response; the body is
// closed when the test ends.
func (s *WebhookSender) Send(url string, body []byte) *http.Response {
	s.t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	r.Header = s.Headers(s.newID(), body)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { resp.Body.Close() })
	return resp
}
