package clerk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
)

// newSet returns a Set over store that stays fresh however slow the
// machine: a test never sees it stale.
func newSet(t testing.TB, store sessions.Store) *sessions.Set {
	t.Helper()
	set, err := sessions.New(context.Background(), sessions.Config{Store: store, MaxStale: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return set
}

// sessionWebhook returns the webhook handler of an instance whose session
// endings go to set (none if nil), with OnEvent.
func sessionWebhook(t testing.TB, set *sessions.Set, sender *clerktest.WebhookSender, onEvent func(context.Context, usersync.Event) error) http.Handler {
	t.Helper()
	p, err := clerk.New(clerk.Config{WebhookSecrets: []string{sender.Secret}, Issuer: clerkIssuer, Sessions: set})
	if err != nil {
		t.Fatal(err)
	}
	s, err := usersync.New(usersync.Config{Store: memstore.New(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h, err := usersync.NewWebhookHandler(s, p, usersync.WebhookConfig{Logger: quiet, OnEvent: onEvent})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// identity is the identity of a session token of the instance.
func identity(subject, sid string) *usersync.Identity {
	return &usersync.Identity{Issuer: clerkIssuer, Subject: subject, SessionID: sid, TokenIdentifier: usersync.TokenIdentifier(clerkIssuer, subject)}
}

// endings returns every ending the store holds.
func endings(t testing.TB, store sessions.Store) []sessions.Ending {
	t.Helper()
	got, err := store.EndedSessions(context.Background(), time.Time{}, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// sessionEvent is the body of a session.* event of sess_a, a session of
// user_a, at the given updated_at.
func sessionEvent(eventType string, updated time.Time) []byte {
	status := strings.TrimPrefix(eventType, "session.")
	if status == "created" {
		status = "active"
	}
	return clerkfake.SessionEvent(eventType, clerk.Session{ID: "sess_a", UserID: "user_a", Status: status, UpdatedAt: updated.UnixMilli(), CreatedAt: updated.Add(-time.Hour).UnixMilli()})
}

// Each of the three endings ends the session: its tokens are refused, the
// user's other session's are not; delivered again, it changes nothing.
func TestSessionWebhooksEndTheSession(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	for _, how := range []string{"ended", "removed", "revoked"} {
		t.Run(how, func(t *testing.T) {
			store := memstore.New()
			set := newSet(t, store)
			h := sessionWebhook(t, set, sender, nil)
			at := time.Now().Add(-time.Second).Truncate(time.Millisecond)
			body := sessionEvent("session."+how, at)
			first := sender.Request("/hook", body)
			if w := serve(h, first); w.Code != 200 || !strings.Contains(w.Body.String(), `"deleted"`) {
				t.Fatalf("session.%s: %d %s", how, w.Code, w.Body)
			}
			if err := set.CheckSession(identity("user_a", "sess_a")); !errors.Is(err, usersync.ErrSessionEnded) {
				t.Fatalf("the ended session's token: %v", err)
			}
			if err := set.CheckSession(identity("user_a", "sess_b")); err != nil {
				t.Fatalf("the user's other session's token: %v", err)
			}
			got := endings(t, store)
			if len(got) != 1 || got[0].Issuer != clerkIssuer || got[0].SessionID != "sess_a" || got[0].Subject != "user_a" || !got[0].EndedAt.Equal(at) {
				t.Fatalf("recorded %+v", got)
			}

			// The same event again, in a new message (a replay), and the
			// same message (a Svix retry): 200, and nothing more recorded.
			if w := serve(h, sender.Request("/hook", body)); w.Code != 200 || !strings.Contains(w.Body.String(), `"stale"`) {
				t.Fatalf("replayed: %d %s", w.Code, w.Body)
			}
			again := httptest.NewRequest("POST", "/hook", strings.NewReader(string(body)))
			again.Header = first.Header.Clone()
			if w := serve(h, again); w.Code != 200 || !strings.Contains(w.Body.String(), `"duplicate"`) {
				t.Fatalf("redelivered: %d %s", w.Code, w.Body)
			}
			if got := endings(t, store); len(got) != 1 || set.Len() != 1 {
				t.Fatalf("after the redeliveries: %d endings, the set holds %d", len(got), set.Len())
			}
		})
	}
}

// session.created, even after the ending, goes to OnEvent and un-ends
// nothing; so do the other session.* events.
func TestSessionCreatedDoesNotUnend(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	store := memstore.New()
	set := newSet(t, store)
	var mu sync.Mutex
	var handled []string
	h := sessionWebhook(t, set, sender, func(_ context.Context, ev usersync.Event) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, ev.Type)
		return nil
	})
	at := time.Now().Add(-time.Second)
	for _, body := range [][]byte{
		sessionEvent("session.ended", at),
		sessionEvent("session.created", at.Add(time.Millisecond)),
		sessionEvent("session.pending", at.Add(2*time.Millisecond)),
	} {
		if w := serve(h, sender.Request("/hook", body)); w.Code != 200 {
			t.Fatalf("%s: %d %s", body, w.Code, w.Body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(handled) != "[session.created session.pending]" {
		t.Fatalf("OnEvent got %v", handled)
	}
	if err := set.CheckSession(identity("user_a", "sess_a")); !errors.Is(err, usersync.ErrSessionEnded) {
		t.Fatalf("after session.created: %v", err)
	}
}

// The ending is at the later of the session's updated_at and the event's
// timestamp (in ms, or in seconds), else now.
func TestSessionEndedAt(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, tc := range []struct {
		name, data, timestamp string
		want                  time.Time // zero: now
	}{
		{"updated_at, after the timestamp", fmt.Sprintf(`{"id":"sess_a","user_id":"user_a","updated_at":%d}`, at.UnixMilli()), fmt.Sprint(at.Add(-time.Second).UnixMilli()), at},
		{"the timestamp, after updated_at", fmt.Sprintf(`{"id":"sess_a","user_id":"user_a","updated_at":%d}`, at.Add(-time.Second).UnixMilli()), fmt.Sprint(at.UnixMilli()), at},
		{"the timestamp in seconds, after updated_at", fmt.Sprintf(`{"id":"sess_a","updated_at":%d}`, at.Add(-time.Second).UnixMilli()), fmt.Sprint(at.Unix()), at},
		{"a text updated_at", `{"id":"sess_a","updated_at":"1700000000000"}`, fmt.Sprint(at.UnixMilli()), at},
		{"a fractional updated_at", fmt.Sprintf(`{"id":"sess_a","updated_at":%d.75}`, at.UnixMilli()), `null`, at},
		{"the timestamp in ms", `{"id":"sess_a","user_id":"user_a"}`, fmt.Sprint(at.UnixMilli()), at},
		{"the timestamp in seconds", `{"id":"sess_a","user_id":"user_a"}`, fmt.Sprint(at.Unix()), at},
		{"a timestamp of another shape", `{"id":"sess_a","user_id":"user_a"}`, `"yesterday"`, time.Time{}},
		{"neither", `{"id":"sess_a"}`, `0`, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := memstore.New()
			h := sessionWebhook(t, newSet(t, store), sender, nil)
			before := time.Now().Truncate(time.Millisecond)
			body := `{"type":"session.revoked","object":"event","timestamp":` + tc.timestamp + `,"data":` + tc.data + `}`
			if w := serve(h, sender.Request("/hook", []byte(body))); w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			got := endings(t, store)
			if len(got) != 1 {
				t.Fatalf("recorded %+v", got)
			}
			switch e := got[0].EndedAt; {
			case !tc.want.IsZero() && !e.Equal(tc.want):
				t.Fatalf("EndedAt %v, want %v", e, tc.want)
			case tc.want.IsZero() && (e.Before(before) || e.After(time.Now())):
				t.Fatalf("EndedAt %v, want now", e)
			}
		})
	}
}

// failingSessions fails every ending it is asked to record, as a database
// that is down does, but reads (so that the Set stays fresh).
type failingSessions struct{ *memstore.Store }

func (failingSessions) EndSessions(context.Context, ...sessions.Ending) error { return errStoreDown }

// A malformed ending is answered 400, one the store fails to record 500
// (Svix retries), and neither leaves anything recorded.
func TestSessionWebhookFailures(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	long := strings.Repeat("s", 256)
	for _, tc := range []struct {
		name, body string
		failing    bool
		want       int
		outcome    string
	}{
		{"without data", `{"type":"session.ended","object":"event"}`, false, 400, "bad request"},
		{"without an id", `{"type":"session.ended","data":{"user_id":"user_a","updated_at":1}}`, false, 400, "bad request"},
		{"an empty id", `{"type":"session.revoked","data":{"id":"","user_id":"user_a"}}`, false, 400, "bad request"},
		{"a numeric id", `{"type":"session.removed","data":{"id":42,"user_id":"user_a"}}`, false, 400, "bad request"},
		{"a null id", `{"type":"session.removed","data":{"id":null,"user_id":"user_a"}}`, false, 400, "bad request"},
		{"an id of another case only", `{"type":"session.removed","data":{"ID":"sess_a","user_id":"user_a"}}`, false, 400, "bad request"},
		{"data of another shape", `{"type":"session.ended","data":["sess_a"]}`, false, 400, "bad request"},
		{"null data", `{"type":"session.ended","data":null}`, false, 400, "bad request"},
		{"an id longer than a store keeps", `{"type":"session.ended","data":{"id":"` + long + `"}}`, false, 400, "invalid data"},
		{"the store fails", string(sessionEvent("session.revoked", time.Now())), true, 500, "store failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := memstore.New()
			var ss sessions.Store = store
			if tc.failing {
				ss = failingSessions{store}
			}
			set := newSet(t, ss)
			h := sessionWebhook(t, set, sender, nil)
			w := serve(h, sender.Request("/hook", []byte(tc.body)))
			if w.Code != tc.want || !strings.Contains(w.Body.String(), `"`+tc.outcome+`"`) {
				t.Fatalf("%d %s, want %d %q", w.Code, w.Body, tc.want, tc.outcome)
			}
			if got := endings(t, store); len(got) != 0 || set.Len() != 0 {
				t.Fatalf("recorded %+v; the set holds %d", got, set.Len())
			}
		})
	}
}

// Without Config.Sessions, the session.* events are about something else,
// as before: malformed or not. That the endings are not recorded is
// logged, once per Provider, without the session's or the user's ID.
func TestSessionEventsWithoutASet(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	for range 2 { // each Provider logs once
		p, err := clerk.New(clerk.Config{Issuer: clerkIssuer, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		before := logs.String()
		if _, err := p.Decode(context.Background(), sessionEvent("session.created", time.Now())); err != nil {
			t.Fatal(err)
		}
		if logs.String() != before {
			t.Fatalf("session.created logged %q", logs.String())
		}
		for _, body := range []string{
			string(sessionEvent("session.revoked", time.Now())),
			`{"type":"session.ended","data":{"id":42}}`,
			`{"type":"session.removed"}`,
			string(sessionEvent("session.ended", time.Now())),
		} {
			ev, err := p.Decode(context.Background(), []byte(body))
			if err != nil || ev.Apply != nil || ev.Write != nil || !strings.HasPrefix(ev.Type, "session.") {
				t.Fatalf("%s: %+v, %v", body, ev, err)
			}
		}
	}
	got := logs.String()
	if n := strings.Count(got, "\n"); n != 2 || strings.Count(got, "level=INFO") != 2 || !strings.Contains(got, "clerk.Config.Sessions is not set") ||
		strings.Contains(got, "sess_") || strings.Contains(got, "user_") {
		t.Fatalf("logged %d lines: %s", n, got)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use: a logger's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// withData returns a session event of sess_a, as Clerk sends it (every
// field, the user embedded), with data's fields changed by change.
func withData(t testing.TB, eventType string, change func(data map[string]json.RawMessage)) []byte {
	t.Helper()
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(sessionEvent(eventType, time.Now().Add(-time.Second)), &ev); err != nil {
		t.Fatal(err)
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(ev["data"], &data); err != nil {
		t.Fatal(err)
	}
	change(data)
	var err error
	if ev["data"], err = json.Marshal(data); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An ending is recorded whatever the shape of the fields it does not need:
// a change in Clerk's session object never loses one to a 400 (after
// which Svix gives up).
func TestSessionWebhookLenient(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	set := func(key, value string) func(map[string]json.RawMessage) {
		return func(d map[string]json.RawMessage) { d[key] = json.RawMessage(value) }
	}
	for _, tc := range []struct {
		name    string
		body    []byte
		subject string // recorded
	}{
		{"last_active_at as text", withData(t, "session.revoked", set("last_active_at", `"2025-01-01T00:00:00Z"`)), "user_a"},
		{"an actor of another shape", withData(t, "session.revoked", set("actor", `["impersonator", 1]`)), "user_a"},
		{"an actor as text", withData(t, "session.ended", set("actor", `"admin"`)), "user_a"},
		{"a numeric status", withData(t, "session.removed", set("status", `3`)), "user_a"},
		{"null timestamps", withData(t, "session.revoked", func(d map[string]json.RawMessage) {
			for _, k := range []string{"expire_at", "abandon_at", "created_at", "last_active_at"} {
				d[k] = json.RawMessage(`null`)
			}
		}), "user_a"},
		{"fractional timestamps", withData(t, "session.revoked", set("created_at", `1.7e12`)), "user_a"},
		{"timestamps beyond int64", withData(t, "session.revoked", set("expire_at", `1e400`)), "user_a"},
		{"an embedded user of another shape", withData(t, "session.revoked", set("user", `"user_a"`)), "user_a"},
		{"a numeric client_id", withData(t, "session.revoked", set("client_id", `12`)), "user_a"},
		{"an organization of another shape", withData(t, "session.revoked", set("last_active_organization_id", `{"id":"org_a"}`)), "user_a"},
		{"new fields", withData(t, "session.revoked", func(d map[string]json.RawMessage) {
			d["tasks"] = json.RawMessage(`[{"key":"choose-organization"}]`)
			d["latest_activity"] = json.RawMessage(`{"browser_name":"Firefox","is_mobile":false}`)
			d["factor_verification_age"] = json.RawMessage(`[0, -1]`)
		}), "user_a"},
		{"a key of another case", withData(t, "session.revoked", set("Id", `42`)), "user_a"},
		{"a numeric user_id", withData(t, "session.revoked", set("user_id", `7`)), ""},
		{"a text updated_at", withData(t, "session.revoked", set("updated_at", `"soon"`)), "user_a"},
		{"an envelope of other shapes", []byte(`{"type":"session.revoked","object":1,"timestamp":"now","instance_id":{"id":"ins_a"},"event_attributes":[],"data":{"id":"sess_a","user_id":"user_a"}}`), "user_a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := memstore.New()
			set := newSet(t, store)
			h := sessionWebhook(t, set, sender, nil)
			if w := serve(h, sender.Request("/hook", tc.body)); w.Code != 200 || !strings.Contains(w.Body.String(), `"deleted"`) {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if err := set.CheckSession(identity("user_a", "sess_a")); !errors.Is(err, usersync.ErrSessionEnded) {
				t.Fatalf("the session's token: %v", err)
			}
			if got := endings(t, store); len(got) != 1 || got[0].SessionID != "sess_a" || got[0].Subject != tc.subject {
				t.Fatalf("recorded %+v", got)
			}
		})
	}
}

// FuzzSessionWebhookFields sets a field of a session ending's data (any
// but its id) to any JSON value: the ending is recorded all the same.
func FuzzSessionWebhookFields(f *testing.F) {
	for _, seed := range []struct{ key, value string }{
		{"last_active_at", `"yesterday"`},
		{"actor", `[1,2]`},
		{"status", `{"state":"revoked"}`},
		{"user", `42`},
		{"user_id", `null`},
		{"updated_at", `-1`},
		{"updated_at", `1e30`},
		{"object", `false`},
		{"ID", `7`},
		{"", `""`},
	} {
		f.Add(seed.key, []byte(seed.value))
	}
	sender := clerktest.NewWebhookSender(f)
	store := memstore.New()
	set := newSet(f, store)
	h := sessionWebhook(f, set, sender, nil)
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		if key == "id" || !json.Valid(value) {
			t.Skip()
		}
		body := withData(t, "session.revoked", func(d map[string]json.RawMessage) { d[key] = value })
		sender := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
		if w := serve(h, sender.Request("/hook", body)); w.Code != 200 || !strings.Contains(w.Body.String(), `"deleted"`) && !strings.Contains(w.Body.String(), `"stale"`) {
			t.Fatalf("%s: %d %s", body, w.Code, w.Body)
		}
		if err := set.CheckSession(identity("user_a", "sess_a")); !errors.Is(err, usersync.ErrSessionEnded) {
			t.Fatalf("%s: the session's token: %v", body, err)
		}
	})
}

// FuzzSessionWebhookBody delivers arbitrary bodies, session events among
// the seeds, to a handler that records endings: 200 or 400, never a 5xx
// or a panic, and an ending recorded only for a session event's ID.
func FuzzSessionWebhookBody(f *testing.F) {
	for _, b := range [][]byte{
		sessionEvent("session.ended", time.Now()),
		sessionEvent("session.removed", time.Now()),
		sessionEvent("session.revoked", time.Now()),
		sessionEvent("session.created", time.Now()),
		[]byte(`{"type":"session.revoked","timestamp":1,"data":{"id":"s","updated_at":-5}}`),
		[]byte(`{"type":"session.ended","timestamp":99999999999999999999,"data":{"id":"s","updated_at":253402300800000}}`),
		[]byte(`{"type":"session.removed","data":{"id":"` + strings.Repeat("s", 300) + `"}}`),
	} {
		f.Add(b)
	}
	sender := clerktest.NewWebhookSender(f)
	store := memstore.New()
	h := sessionWebhook(f, newSet(f, store), sender, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		sender := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
		w := serve(h, sender.Request("/", body))
		if w.Code != 200 && w.Code != 400 && w.Code != 413 {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
		for _, e := range endings(t, store) {
			if e.SessionID == "" || e.Issuer != clerkIssuer || e.EndedAt.After(time.Now()) {
				t.Fatalf("recorded %+v", e)
			}
		}
	})
}
