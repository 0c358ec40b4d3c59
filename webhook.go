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
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/telemetry"
)

// A Provider is an identity provider's side of webhooks: how its
// deliveries are authenticated and what they mean. The clerk package has
// the Clerk one; any other provider takes a few dozen lines (see the
// package examples).
//
// Neither method may keep body after it returns: the handler reuses it.
type Provider interface {
	// Verify authenticates a delivery from its headers and its raw body,
	// before anything of the body is decoded. It returns the delivery's ID,
	// which must be covered by the signature and stay the same across
	// retries of one delivery (for Svix, svix-id): the handler answers a
	// recently applied ID as a duplicate ("" turns that off). Any error
	// means the delivery is not authentic: 401.
	Verify(ctx context.Context, header http.Header, body []byte) (deliveryID string, err error)

	// Decode turns a verified body into an event. An error means the body
	// is malformed: 400.
	Decode(ctx context.Context, body []byte) (Event, error)
}

// Event is a decoded webhook delivery.
type Event struct {
	// Type is the provider's name for the event, such as "user.updated".
	// It appears in logs.
	Type string
	// Write is the user the event is about: for an upsert, a Write with
	// Issuer, Subject, Version, Fields and Profile (the Syncer fills in the
	// rest); for a delete, Issuer and Subject. Nil for an event about
	// anything else.
	Write *Write
	// Delete means the event deletes the user Write names.
	Delete bool
	// Apply, if set, applies an event about another entity that the
	// provider keeps (an organization, a membership: see clerk and orgs),
	// when Write is nil. Its errors are answered as a user write's are:
	// ErrInvalid 400, ErrDeleted 200 (a deleted entity), any other 500.
	Apply func(context.Context) (Outcome, error)
	// Raw is a copy of the verified body. The handler sets it before it
	// calls WebhookConfig.OnEvent, which may keep it.
	Raw json.RawMessage
}

// WebhookConfig configures a webhook handler. Every field has the default
// its comment gives.
type WebhookConfig struct {
	// MaxBodySize caps the request body. Default 1 MiB.
	MaxBodySize int64
	// DedupeSize is how many recently applied delivery IDs are remembered,
	// so that a redelivery is answered 200 "duplicate" without a store
	// write. (Without it a redelivery is still harmless: its write is
	// stale.) Default 10,000; negative turns it off.
	DedupeSize int
	// OnEvent, if set, receives the verified events that are about
	// neither a user nor an entity the provider applies itself (with
	// Event.Apply: clerk's organizations, when configured): Clerk's
	// session.*, organizationInvitation.*, ..., so that an app needs no
	// second endpoint to receive them. An error answers 500, and the
	// provider retries. Without it they are answered 200 "ignored".
	OnEvent func(context.Context, Event) error
	// Logger logs one line per delivery: its ID (bounded), type, outcome
	// and status, and the trace ID of its span. Default slog.Default().
	Logger *slog.Logger
	// MeterProvider receives usersync_webhook_deliveries_total, by event
	// type and outcome; TracerProvider a span per delivery, a child of the
	// request's span (none for a request outside any trace). Default: the
	// global providers of go.opentelemetry.io/otel, which do nothing until
	// the app installs the OpenTelemetry SDK.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// NewWebhookHandler returns an http.Handler that receives the provider's
// webhooks and applies their user events to s. Mount it outside any auth
// middleware (the provider signs its deliveries):
//
//	mux.Handle("POST /clerk-users-webhook", handler)
//
// It answers 2xx when a delivery was applied, a duplicate (an ID it applied
// recently), stale (an older event), aimed at a deleted user, or not about
// a user: none of these can ever change anything, so the provider must not
// retry them. It answers 400 for a malformed body or user data, 401 for a
// delivery that fails Verify, 405 for a method other than POST, 413 for a
// body over the limit, and 500 when the store (or OnEvent) fails, so that
// the provider retries; a store write is atomic, so nothing is half-done.
func NewWebhookHandler(s *Syncer, p Provider, cfg WebhookConfig) (http.Handler, error) {
	if s == nil || p == nil {
		return nil, fmt.Errorf("%w: NewWebhookHandler needs a Syncer and a Provider", ErrInvalid)
	}
	config.Default(&cfg.MaxBodySize, 1<<20)
	config.Default(&cfg.DedupeSize, 10_000)
	cfg.Logger = telemetry.Logger(cfg.Logger)
	h := &webhookHandler{syncer: s, provider: p, cfg: cfg, tel: newWebhookTelemetry(cfg.MeterProvider, cfg.TracerProvider)}
	if cfg.DedupeSize > 0 {
		h.seen = newSeenSet(cfg.DedupeSize)
	}
	return h, nil
}

type webhookHandler struct {
	syncer   *Syncer
	provider Provider
	cfg      WebhookConfig
	seen     *seenSet // nil when DedupeSize < 0
	tel      *webhookTelemetry
}

// bodyPool recycles request body buffers.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (h *webhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, span := h.tel.start(r.Context())
	d := response{w: w, ctx: ctx, span: span}
	defer h.tel.finish(&d)
	h.serve(&d, r)
}

// response is the answer to one delivery, under way: what respond
// answered, for the telemetry.
type response struct {
	w    http.ResponseWriter
	ctx  context.Context
	span trace.Span

	status             int
	eventType, outcome string
}

// serve handles a delivery and answers it with h.respond, once.
func (h *webhookHandler) serve(d *response, r *http.Request) {
	w := d.w
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.respond(d, http.StatusMethodNotAllowed, "", "", "method not allowed", nil)
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
			h.respond(d, http.StatusRequestEntityTooLarge, "", "", "body too large", nil)
			return
		}
		h.respond(d, http.StatusBadRequest, "", "", "unreadable body", err)
		return
	}
	body := buf.Bytes()

	ctx := d.ctx
	id, err := h.provider.Verify(ctx, r.Header, body)
	if err != nil {
		h.respond(d, http.StatusUnauthorized, id, "", "bad signature", err)
		return
	}
	dedupe := h.seen != nil && id != ""
	if dedupe && h.seen.has(id) {
		h.respond(d, http.StatusOK, id, "", "duplicate", nil)
		return
	}
	// Verified: only now is the body decoded.
	ev, err := h.provider.Decode(ctx, body)
	if err != nil {
		h.respond(d, http.StatusBadRequest, id, ev.Type, "bad request", err)
		return
	}
	status, outcome, err := h.apply(ctx, &ev, body)
	if status == http.StatusOK && dedupe {
		h.seen.add(id)
	}
	h.respond(d, status, id, ev.Type, outcome, err)
}

// apply applies a verified event and returns the status and outcome.
func (h *webhookHandler) apply(ctx context.Context, ev *Event, body []byte) (int, string, error) {
	switch {
	case ev.Write == nil && ev.Delete:
		return http.StatusBadRequest, "bad request", fmt.Errorf("%w: a delete event names no user", ErrInvalid)
	case ev.Write == nil && ev.Apply != nil:
		outcome, err := ev.Apply(ctx)
		return applied(outcome, err, "deleted entity", "invalid data")
	case ev.Write == nil:
		if h.cfg.OnEvent == nil {
			return http.StatusOK, "ignored", nil
		}
		ev.Raw = bytes.Clone(body)
		if err := h.cfg.OnEvent(ctx, *ev); err != nil {
			return http.StatusInternalServerError, "handler failed", err
		}
		return http.StatusOK, "handled", nil
	}
	var outcome Outcome
	var err error
	if ev.Delete {
		_, outcome, err = h.syncer.Delete(ctx, ev.Write.Issuer, ev.Write.Subject)
	} else {
		_, outcome, err = h.syncer.Upsert(ctx, *ev.Write)
	}
	return applied(outcome, err, "user deleted", "invalid user data")
}

// applied returns the status and outcome of a write: the one status
// discipline of every entity.
func applied(outcome Outcome, err error, deleted, invalid string) (int, string, error) {
	switch {
	case errors.Is(err, ErrDeleted):
		return http.StatusOK, deleted, nil
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, invalid, err
	case err != nil:
		return http.StatusInternalServerError, "store failed", err
	}
	return http.StatusOK, outcome.String(), nil
}

// truncate bounds a sender-chosen string before it reaches a log line.
func truncate(s string, max int) string {
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// respond writes a short JSON answer and logs the delivery once. Errors
// are logged bounded: a provider's errors may quote the body.
func (h *webhookHandler) respond(d *response, status int, deliveryID, eventType, outcome string, err error) {
	ctx, w := d.ctx, d.w
	d.status, d.eventType, d.outcome = status, eventType, outcome
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status >= 400:
		level = slog.LevelWarn
	case outcome == "ignored" || outcome == "duplicate":
		level = slog.LevelDebug
	}
	if h.cfg.Logger.Enabled(ctx, level) {
		attrs := []slog.Attr{slog.String("delivery_id", truncate(deliveryID, 64)), slog.String("type", truncate(eventType, 64)),
			slog.String("outcome", outcome), slog.Int("status", status)}
		if err != nil {
			attrs = append(attrs, slog.String("error", truncate(err.Error(), 200)))
		}
		h.cfg.Logger.LogAttrs(ctx, level, "usersync: webhook", attrs...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if body, ok := outcomeBodies[outcome]; ok {
		w.Write(body)
		return
	}
	io.WriteString(w, `{"outcome":"`+outcome+`"}`+"\n")
}

// outcomeBodies are the bodies of the usual answers, made once.
var outcomeBodies = func() map[string][]byte {
	m := map[string][]byte{}
	for _, o := range []string{"created", "updated", "deleted", "stale", "duplicate", "ignored"} {
		m[o] = []byte(`{"outcome":"` + o + `"}` + "\n")
	}
	return m
}()

// seenSet remembers the last n message IDs it was given, so that a
// redelivered webhook (same svix-id) is answered without a store write.
// It is a ring: the oldest ID is forgotten first.
type seenSet struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

func newSeenSet(n int) *seenSet {
	return &seenSet{ids: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (s *seenSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

func (s *seenSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.ids[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}
