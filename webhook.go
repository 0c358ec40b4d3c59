package usersync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// Webhook verification errors, usable with errors.Is (Svix's own are
// unexported).
var (
	ErrMissingWebhookHeaders   = errors.New("usersync: missing svix-id, svix-timestamp or svix-signature header")
	ErrBadWebhookSignature     = errors.New("usersync: no matching webhook signature")
	ErrWebhookTimestampTooSkew = errors.New("usersync: webhook timestamp outside the tolerance")
)

// WebhookConfig configures a WebhookHandler. Secrets and Issuer are
// required; every other field has the default its comment gives.
type WebhookConfig struct {
	// Secrets are the endpoint's Svix signing secrets ("whsec_..."). A
	// delivery signed with any of them is accepted: list the old and the
	// new secret while rotating.
	Secrets []string
	// Issuer is the iss of the Clerk instance's session tokens (its
	// Frontend API URL). Webhook users are keyed Issuer + "|" + Clerk user
	// ID, the key a token of theirs gives, so both ways in meet in one row.
	Issuer string
	// Map turns a Clerk user into a profile. Default ClerkProfile.
	Map func(*ClerkUser) (Profile, Fields)
	// MaxBodySize caps the request body. Default 1 MiB.
	MaxBodySize int64
	// Tolerance is how far the svix-timestamp may be from now, either way.
	// Default 5 minutes.
	Tolerance time.Duration
	// DedupeSize is how many recently applied svix-ids are remembered, so
	// that a redelivery of the same message is answered 200 "duplicate"
	// without a store write. (Without it a redelivery is still harmless:
	// the write is stale.) Default 10,000; negative turns it off.
	DedupeSize int
	// Now is the clock. Default: the Syncer's.
	Now func() time.Time
	// Logger logs one line per delivery: svix-id, event type, outcome.
	// Default: the Syncer's.
	Logger *slog.Logger
}

// WebhookHandler receives Clerk's Svix-signed user.created, user.updated
// and user.deleted webhooks and applies them to a Syncer. Mount it on your
// mux, outside any auth middleware:
//
//	mux.Handle("POST /clerk-users-webhook", handler)
//
// It answers 2xx when the delivery was applied, a duplicate (a svix-id it
// applied recently), stale (an older event), aimed at a deleted user, or
// ignored (another event type):
// none of these can ever change anything, so Svix must not retry them. It
// answers 400 for malformed JSON or missing fields, 401 for a missing or
// bad signature or a timestamp out of tolerance, 405 for a method other
// than POST, 413 for a body over the limit, and 500 when the store fails,
// so that Svix retries; a store write is atomic, so nothing is half-done.
type WebhookHandler struct {
	syncer   *Syncer
	cfg      WebhookConfig
	webhooks []*svix.Webhook
	seen     *seenSet // nil when DedupeSize < 0
}

// NewWebhookHandler returns a handler applying verified deliveries to s. An
// empty or malformed secret, or an empty issuer, is an error wrapping
// ErrInvalid.
func NewWebhookHandler(s *Syncer, cfg WebhookConfig) (*WebhookHandler, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil Syncer", ErrInvalid)
	}
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("%w: webhook issuer is required (the iss of the instance's tokens)", ErrInvalid)
	}
	if len(cfg.Secrets) == 0 {
		return nil, fmt.Errorf("%w: no webhook signing secret", ErrInvalid)
	}
	h := &WebhookHandler{syncer: s, cfg: cfg}
	for i, secret := range cfg.Secrets {
		wh, err := newSvixWebhook(secret)
		if err != nil {
			return nil, fmt.Errorf("%w: webhook secret #%d: %w", ErrInvalid, i+1, err)
		}
		h.webhooks = append(h.webhooks, wh)
	}
	setDefault(&h.cfg.MaxBodySize, 1<<20)
	setDefault(&h.cfg.Tolerance, 5*time.Minute)
	setDefault(&h.cfg.DedupeSize, 10_000)
	if h.cfg.DedupeSize > 0 {
		h.seen = newSeenSet(h.cfg.DedupeSize)
	}
	if h.cfg.Map == nil {
		h.cfg.Map = ClerkProfile
	}
	if h.cfg.Now == nil {
		h.cfg.Now = s.now
	}
	if h.cfg.Logger == nil {
		h.cfg.Logger = s.log
	}
	return h, nil
}

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

// webhookHeaders are the svix-* (or webhook-*) headers of a delivery.
type webhookHeaders struct {
	id, timestamp, signature string
}

// readWebhookHeaders returns the delivery's headers, preferring the svix-*
// set and falling back to the webhook-* one, as Svix does.
func readWebhookHeaders(h http.Header) (webhookHeaders, error) {
	w := webhookHeaders{h.Get("svix-id"), h.Get("svix-timestamp"), h.Get("svix-signature")}
	if w.id == "" || w.timestamp == "" || w.signature == "" {
		w = webhookHeaders{h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")}
	}
	if w.id == "" || w.timestamp == "" || w.signature == "" {
		return w, ErrMissingWebhookHeaders
	}
	return w, nil
}

// checkTimestamp checks the svix-timestamp against now and the tolerance.
func checkTimestamp(ts string, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || strconv.FormatInt(sec, 10) != ts {
		// Svix signs the canonical decimal; "+1614265330" or
		// "01614265330" would verify as the same message in another form.
		return fmt.Errorf("%w: svix-timestamp is not a canonical integer", ErrBadWebhookSignature)
	}
	t := time.Unix(sec, 0)
	if now.Sub(t) > tolerance || t.Sub(now) > tolerance {
		return ErrWebhookTimestampTooSkew
	}
	return nil
}

// verify checks a delivery's signature with every secret: svix verifies
// the raw body bytes; the timestamp was checked against our own clock.
func (h *WebhookHandler) verify(body []byte, header http.Header) (webhookHeaders, error) {
	wh, err := readWebhookHeaders(header)
	if err != nil {
		return wh, err
	}
	if err := checkTimestamp(wh.timestamp, h.cfg.Now(), h.cfg.Tolerance); err != nil {
		return wh, err
	}
	for _, v := range h.webhooks {
		if v.VerifyIgnoringTimestamp(body, header) == nil {
			return wh, nil
		}
	}
	return wh, ErrBadWebhookSignature
}

// bodyPool recycles request body buffers.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP implements http.Handler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.respond(w, r, http.StatusMethodNotAllowed, "", "", "method not allowed")
		return
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			bodyPool.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodySize)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.respond(w, r, http.StatusRequestEntityTooLarge, "", "", "body too large")
			return
		}
		h.respond(w, r, http.StatusBadRequest, "", "", "unreadable body")
		return
	}
	body := buf.Bytes()

	headers, err := h.verify(body, r.Header)
	if err != nil {
		reason := "bad signature"
		switch {
		case errors.Is(err, ErrMissingWebhookHeaders):
			reason = "missing signature headers"
		case errors.Is(err, ErrWebhookTimestampTooSkew):
			reason = "timestamp out of tolerance"
		}
		h.respond(w, r, http.StatusUnauthorized, headers.id, "", reason)
		return
	}

	// The svix-id is signed and stays the same across retries.
	if h.seen != nil && h.seen.has(headers.id) {
		h.respond(w, r, http.StatusOK, headers.id, "", "duplicate")
		return
	}

	// Verified: only now is the body decoded.
	var ev ClerkEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && ev.Type != "" && !isUserEvent(ev.Type) {
			h.respond(w, r, http.StatusOK, headers.id, ev.Type, "ignored")
			return
		}
		h.respond(w, r, http.StatusBadRequest, headers.id, ev.Type, "malformed JSON")
		return
	}
	status, outcome := h.apply(r.Context(), &ev)
	if status == http.StatusOK && h.seen != nil {
		h.seen.add(headers.id)
	}
	h.respond(w, r, status, headers.id, ev.Type, outcome)
}

// truncate bounds a sender-chosen string before it reaches a log line.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

func isUserEvent(t string) bool {
	return t == "user.created" || t == "user.updated" || t == "user.deleted"
}

// apply applies a verified event and returns the status and outcome.
func (h *WebhookHandler) apply(ctx context.Context, ev *ClerkEvent) (int, string) {
	switch {
	case ev.Type == "":
		return http.StatusBadRequest, "missing type"
	case !isUserEvent(ev.Type):
		return http.StatusOK, "ignored"
	case ev.Data.ID == "":
		return http.StatusBadRequest, "missing data.id"
	case ev.Type != "user.deleted" && ev.Data.UpdatedAt <= 0:
		return http.StatusBadRequest, "missing data.updated_at"
	}
	var outcome Outcome
	var err error
	if ev.Type == "user.deleted" {
		_, outcome, err = h.syncer.Delete(ctx, h.cfg.Issuer, ev.Data.ID)
	} else {
		p, f := h.cfg.Map(&ev.Data)
		_, outcome, err = h.syncer.Upsert(ctx, Update{
			Issuer: h.cfg.Issuer, Subject: ev.Data.ID, Version: Version(ev.Data.UpdatedAt), Fields: f, Profile: p,
		})
	}
	switch {
	case errors.Is(err, ErrDeleted):
		return http.StatusOK, "user deleted"
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, "invalid user data"
	case err != nil:
		h.cfg.Logger.ErrorContext(ctx, "usersync: webhook store write failed", "error", err)
		return http.StatusInternalServerError, "store failed"
	}
	return http.StatusOK, outcome.String()
}

// respond writes a short JSON answer and logs the delivery once.
func (h *WebhookHandler) respond(w http.ResponseWriter, r *http.Request, status int, svixID, eventType, outcome string) {
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status >= 400:
		level = slog.LevelWarn
	case outcome == "ignored":
		level = slog.LevelDebug
	}
	ctx := r.Context()
	if h.cfg.Logger.Enabled(ctx, level) {
		h.cfg.Logger.LogAttrs(ctx, level, "usersync: webhook",
			slog.String("svix_id", truncate(svixID)), slog.String("type", truncate(eventType)),
			slog.String("outcome", outcome), slog.Int("status", status))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"outcome":"`+outcome+`"}`+"\n")
}
