package clerkfake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// WebhookSender signs webhook deliveries as Svix does for Clerk: the
// svix-id, svix-timestamp and svix-signature headers of a body.
type WebhookSender struct {
	// Secret is the signing secret, "whsec_<base64>": give it to
	// clerk.Config.WebhookSecrets.
	Secret string
	// Now is the clock of the svix-timestamp of NewRequest and Send.
	// Default time.Now.
	Now func() time.Time
	// Client posts the deliveries of Send. Default http.DefaultClient.
	Client *http.Client

	wh *svix.Webhook
	n  atomic.Int64
}

// NewWebhookSecret returns a fresh random signing secret, "whsec_" and 32
// bytes in base64.
func NewWebhookSecret() string {
	key := make([]byte, 32)
	rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// NewWebhookSender returns a sender signing with secret, or with a fresh
// random one if secret is "". A malformed secret is an error, which does
// not contain it.
func NewWebhookSender(secret string) (*WebhookSender, error) {
	if secret == "" {
		secret = NewWebhookSecret()
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil || len(strings.TrimPrefix(secret, "whsec_")) < 16 {
		return nil, errors.New("clerkfake: the webhook secret is not whsec_ and 16 or more characters of base64")
	}
	return &WebhookSender{Secret: secret, Now: time.Now, wh: wh}, nil
}

// Sign returns the Svix headers of a delivery of body with message ID id,
// signed at at, and Content-Type: application/json.
func (s *WebhookSender) Sign(id string, at time.Time, body []byte) (http.Header, error) {
	sig, err := s.wh.Sign(id, at, body)
	if err != nil {
		return nil, fmt.Errorf("clerkfake: signing a delivery: %w", err)
	}
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("svix-signature", sig)
	h.Set("Content-Type", "application/json")
	return h, nil
}

// MessageID returns a fresh svix-id: "msg_", a counter and random bytes.
func (s *WebhookSender) MessageID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "msg_" + strconv.FormatInt(s.n.Add(1), 10) + "_" + base64.RawURLEncoding.EncodeToString(b)
}

// NewRequest returns a POST of body to url, signed at Now with a fresh
// svix-id.
func (s *WebhookSender) NewRequest(ctx context.Context, url string, body []byte) (*http.Request, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if r.Header, err = s.Sign(s.MessageID(), now(), body); err != nil {
		return nil, err
	}
	return r, nil
}

// Send posts body, signed, to url and returns the response, whose body
// the caller closes.
func (s *WebhookSender) Send(ctx context.Context, url string, body []byte) (*http.Response, error) {
	r, err := s.NewRequest(ctx, url, body)
	if err != nil {
		return nil, err
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	return client.Do(r)
}
