package clerk_test

import (
	"context"
	"errors"
	"fmt"
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

// The ending is at the session's updated_at, else at the event's
// timestamp (in ms, or in seconds), else now.
func TestSessionEndedAt(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, tc := range []struct {
		name, data, timestamp string
		want                  time.Time // zero: now
	}{
		{"updated_at", fmt.Sprintf(`{"id":"sess_a","user_id":"user_a","updated_at":%d}`, at.UnixMilli()), fmt.Sprint(at.Add(time.Second).UnixMilli()), at},
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
		{"a numeric user_id", `{"type":"session.ended","data":{"id":"sess_a","user_id":7}}`, false, 400, "bad request"},
		{"a text updated_at", `{"type":"session.ended","data":{"id":"sess_a","updated_at":"1700000000000"}}`, false, 400, "bad request"},
		{"data of another shape", `{"type":"session.ended","data":["sess_a"]}`, false, 400, "bad request"},
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
// as before: malformed or not.
func TestSessionEventsWithoutASet(t *testing.T) {
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		string(sessionEvent("session.revoked", time.Now())),
		`{"type":"session.ended","data":{"id":42}}`,
		`{"type":"session.removed"}`,
	} {
		ev, err := p.Decode(context.Background(), []byte(body))
		if err != nil || ev.Apply != nil || ev.Write != nil || !strings.HasPrefix(ev.Type, "session.") {
			t.Fatalf("%s: %+v, %v", body, ev, err)
		}
	}
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
