package clerk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// Webhook verification errors, usable with errors.Is (Svix's own are
// unexported).
var (
	ErrMissingHeaders = errors.New("clerk: missing svix-id, svix-timestamp or svix-signature header")
	ErrBadSignature   = errors.New("clerk: no matching webhook signature")
	ErrTimestampSkew  = errors.New("clerk: webhook timestamp outside the tolerance")
)

// newSvixWebhook checks a "whsec_" secret and builds its verifier. The
// error never contains the secret.
func newSvixWebhook(secret string) (*svix.Webhook, error) {
	raw, ok := bytes.CutPrefix([]byte(secret), []byte("whsec_"))
	if !ok {
		raw = []byte(secret)
	}
	if len(raw) == 0 {
		return nil, errors.New("empty secret")
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return nil, errors.New("secret is not base64 (expected whsec_<base64>)")
	}
	if len(raw) < 16 {
		return nil, errors.New("secret is too short")
	}
	return wh, nil
}

// svixHeaders are the svix-* (or webhook-*) headers of a delivery.
type svixHeaders struct {
	id, timestamp, signature string
}

// readHeaders returns the delivery's headers, preferring the svix-* set
// and falling back to the webhook-* one, as Svix does. The names are
// written in their canonical form, which Get looks up without allocating.
func readHeaders(h http.Header) (svixHeaders, error) {
	w := svixHeaders{h.Get("Svix-Id"), h.Get("Svix-Timestamp"), h.Get("Svix-Signature")}
	if w.id == "" || w.timestamp == "" || w.signature == "" {
		w = svixHeaders{h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), h.Get("Webhook-Signature")}
	}
	if w.id == "" || w.timestamp == "" || w.signature == "" {
		return w, ErrMissingHeaders
	}
	return w, nil
}

// checkTimestamp checks the svix-timestamp against now and the tolerance.
func checkTimestamp(ts string, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || strconv.FormatInt(sec, 10) != ts {
		// Svix signs the canonical decimal; "+1614265330" or
		// "01614265330" would verify as the same message in another form.
		return fmt.Errorf("%w: svix-timestamp is not a canonical integer", ErrBadSignature)
	}
	t := time.Unix(sec, 0)
	if now.Sub(t) > tolerance || t.Sub(now) > tolerance {
		return ErrTimestampSkew
	}
	return nil
}

// Verify implements usersync.Provider: it checks the delivery's Svix
// signature over the raw body with every secret, and its timestamp against
// Config.Now and Tolerance. It returns the svix-id, the same for every
// retry of a message.
func (p *Provider) Verify(_ context.Context, header http.Header, body []byte) (string, error) {
	h, err := readHeaders(header)
	if err != nil {
		return h.id, err
	}
	if err := checkTimestamp(h.timestamp, p.cfg.Now(), p.cfg.Tolerance); err != nil {
		return h.id, err
	}
	if len(p.webhooks) == 0 {
		return h.id, fmt.Errorf("%w: no webhook secret configured (clerk.Config.WebhookSecrets)", ErrBadSignature)
	}
	for _, wh := range p.webhooks {
		// The timestamp was checked against our own clock above.
		if wh.VerifyIgnoringTimestamp(body, header) == nil {
			return h.id, nil
		}
	}
	return h.id, ErrBadSignature
}
