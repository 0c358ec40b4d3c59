package usersync_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

// The provider-neutral handler, driven by the in-house provider of
// ExampleProvider: one case per status and outcome.
func TestWebhookHandlerResponses(t *testing.T) {
	p := inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}
	saved := `{"type":"user.saved","id":"42","name":"Ada","updated_at":1700000000000}`
	otherFails := errors.New("handler down")
	tests := []struct {
		name    string
		store   usersync.Store
		onEvent func(context.Context, usersync.Event) error
		request func(h http.Handler) *http.Request
		want    int
		outcome string
	}{
		{"applied", nil, nil, func(http.Handler) *http.Request { return p.sign("d1", saved) }, 200, "created"},
		{"the same event in a new delivery is stale", nil, nil, func(h http.Handler) *http.Request {
			serve(h, p.sign("d1", saved))
			return p.sign("d2", saved)
		}, 200, "stale"},
		{"a redelivery is a duplicate", nil, nil, func(h http.Handler) *http.Request {
			serve(h, p.sign("d1", saved))
			return p.sign("d1", saved)
		}, 200, "duplicate"},
		{"a redelivery with a forged signature is not a duplicate", nil, nil, func(h http.Handler) *http.Request {
			serve(h, p.sign("d1", saved))
			r := p.sign("d1", saved)
			r.Header.Set("X-Signature", "00")
			return r
		}, 401, "bad signature"},
		{"a delivery that failed is not remembered", failingStore{memstore.New()}, nil, func(h http.Handler) *http.Request {
			serve(h, p.sign("d1", saved))
			return p.sign("d1", saved)
		}, 500, "store failed"},
		{"aimed at a deleted user", nil, nil, func(h http.Handler) *http.Request {
			serve(h, p.sign("d1", `{"type":"user.removed","id":"42"}`))
			return p.sign("d2", saved)
		}, 200, "user deleted"},
		{"deleted", nil, nil, func(http.Handler) *http.Request { return p.sign("d1", `{"type":"user.removed","id":"42"}`) }, 200, "deleted"},
		{"not about a user, no OnEvent", nil, nil, func(http.Handler) *http.Request { return p.sign("d1", `{"type":"team.created"}`) }, 200, "ignored"},
		{"not about a user, OnEvent", nil, func(context.Context, usersync.Event) error { return nil },
			func(http.Handler) *http.Request { return p.sign("d1", `{"type":"team.created"}`) }, 200, "handled"},
		{"OnEvent fails", nil, func(context.Context, usersync.Event) error { return otherFails },
			func(http.Handler) *http.Request { return p.sign("d1", `{"type":"team.created"}`) }, 500, "handler failed"},
		{"malformed body", nil, nil, func(http.Handler) *http.Request { return p.sign("d1", `{"type":`) }, 400, "bad request"},
		{"invalid user data", nil, nil, func(http.Handler) *http.Request {
			return p.sign("d1", `{"type":"user.saved","id":"42","name":"Ada"}`) // no version
		}, 400, "invalid user data"},
		{"a delivery without an ID is applied, never a duplicate", nil, nil, func(h http.Handler) *http.Request {
			serve(h, p.sign("", saved))
			return p.sign("", `{"type":"user.saved","id":"43","name":"Bob","updated_at":1700000000000}`)
		}, 200, "created"},
		{"a delete of an empty subject", nil, nil, func(http.Handler) *http.Request { return p.sign("d1", `{"type":"user.removed"}`) }, 400, "invalid user data"},
		{"body changed after signing", nil, nil, func(http.Handler) *http.Request {
			r := p.sign("d1", saved)
			r.Body = io.NopCloser(strings.NewReader(saved + " "))
			return r
		}, 401, "bad signature"},
		{"body too large", nil, nil, func(http.Handler) *http.Request {
			return p.sign("d1", `{"type":"user.saved","x":"`+strings.Repeat("a", 2<<20)+`"}`)
		}, 413, "body too large"},
		{"wrong method", nil, nil, func(http.Handler) *http.Request { return httptest.NewRequest("GET", "/", nil) }, 405, "method not allowed"},
		{"store failure", failingStore{memstore.New()}, nil, func(http.Handler) *http.Request { return p.sign("d1", saved) }, 500, "store failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandler(t, tt.store, p, usersync.WebhookConfig{OnEvent: tt.onEvent})
			w := serve(h, tt.request(h))
			if w.Code != tt.want || w.Body.String() != `{"outcome":"`+tt.outcome+`"}`+"\n" {
				t.Fatalf("got %d %s, want %d %q", w.Code, w.Body, tt.want, tt.outcome)
			}
			if w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("Content-Type %q", w.Header().Get("Content-Type"))
			}
		})
	}
}

// OnEvent may keep the event: its Raw is its own, not the handler's
// recycled buffer.
func TestWebhookOnEventMayKeepRaw(t *testing.T) {
	p := inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}
	var kept []usersync.Event
	h := newHandler(t, nil, p, usersync.WebhookConfig{OnEvent: func(_ context.Context, ev usersync.Event) error {
		kept = append(kept, ev)
		return nil
	}})
	bodies := []string{`{"type":"team.created","id":"` + strings.Repeat("A", 300) + `"}`, `{"type":"team.created","id":"` + strings.Repeat("B", 300) + `"}`}
	for i, b := range bodies {
		if w := serve(h, p.sign(fmt.Sprint("d", i), b)); w.Code != 200 {
			t.Fatalf("delivery %d: %d", i, w.Code)
		}
	}
	if len(kept) != len(bodies) {
		t.Fatalf("OnEvent called %d times, want %d", len(kept), len(bodies))
	}
	for i, ev := range kept {
		if string(ev.Raw) != bodies[i] {
			t.Fatalf("kept event %d changed under OnEvent: %.40s...", i, ev.Raw)
		}
	}
}

// The handler checks the signature before it decodes anything: a body
// that fails Verify never reaches Decode.
func TestWebhookHandlerVerifiesBeforeDecoding(t *testing.T) {
	p := &spyProvider{inHouse: inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}}
	h := newHandler(t, nil, p, usersync.WebhookConfig{})
	r := p.sign("d1", `{"type":"user.saved","id":"42","name":"Ada","updated_at":1}`)
	r.Header.Set("X-Signature", "00")
	if w := serve(h, r); w.Code != 401 || p.decoded != 0 {
		t.Fatalf("status %d, Decode called %d times", w.Code, p.decoded)
	}
}

type spyProvider struct {
	inHouse
	decoded int
}

func (p *spyProvider) Decode(ctx context.Context, body []byte) (usersync.Event, error) {
	p.decoded++
	return p.inHouse.Decode(ctx, body)
}

// A provider that returns a delete without naming the user is answered
// 400, not 200 "ignored": the delete must not be lost silently.
func TestWebhookDeleteWithoutUser(t *testing.T) {
	p := brokenProvider{inHouse{secret: []byte("s3cret")}}
	h := newHandler(t, nil, p, usersync.WebhookConfig{})
	if w := serve(h, p.sign("d1", `{}`)); w.Code != 400 {
		t.Fatalf("status %d %s, want 400", w.Code, w.Body)
	}
}

type brokenProvider struct{ inHouse }

func (brokenProvider) Decode(context.Context, []byte) (usersync.Event, error) {
	return usersync.Event{Type: "user.removed", Delete: true}, nil
}

func TestNewWebhookHandlerRejectsNil(t *testing.T) {
	s := newSyncer(t, nil, nil)
	if _, err := usersync.NewWebhookHandler(s, nil, usersync.WebhookConfig{}); !errors.Is(err, usersync.ErrInvalid) {
		t.Errorf("nil provider: err = %v", err)
	}
	if _, err := usersync.NewWebhookHandler(nil, inHouse{}, usersync.WebhookConfig{}); !errors.Is(err, usersync.ErrInvalid) {
		t.Errorf("nil syncer: err = %v", err)
	}
}

func newHandler(t testing.TB, store usersync.Store, p usersync.Provider, cfg usersync.WebhookConfig) http.Handler {
	t.Helper()
	cfg.Logger = quiet
	h, err := usersync.NewWebhookHandler(newSyncer(t, store, nil), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
