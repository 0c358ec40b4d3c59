package usersync_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/usersynctest"
)

// TestEndedSessionsAreRefused holds that with Config.Sessions a token of an
// ended session is refused by every middleware, from the verifier's cache
// or not, through any extractor, while the user's other sessions go on.
func TestEndedSessionsAreRefused(t *testing.T) {
	ctx := context.Background()
	iss := usersynctest.NewIssuer(t)
	store := memstore.New()
	set, err := sessions.New(ctx, sessions.Config{Store: store, MaxStale: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	v := newVerifier(t, nil, iss)
	// A custom extractor, in front of the verifier: the check is the
	// Syncer's, whatever finds the identity.
	custom := usersync.Extractor(extractorFunc(func(r *http.Request) (*usersync.Identity, error) {
		return v.Identify(r)
	}))
	for _, ex := range []struct {
		name string
		ex   usersync.Extractor
	}{{"verifier", v}, {"custom extractor", custom}} {
		sid := "sess_ended_by_" + strings.ReplaceAll(ex.name, " ", "_")
		ended := iss.Token(map[string]any{"sub": "user_ada", "sid": sid})
		other := iss.Token(map[string]any{"sub": "user_ada", "sid": "sess_other"})
		syncer := newSyncerWith(t, store, nil, func(c *usersync.Config) { c.Extractor, c.Sessions = ex.ex, set })
		ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := usersync.IdentityFromContext(r.Context())
			if id == nil {
				io.WriteString(w, "signed out")
				return
			}
			io.WriteString(w, id.SessionID)
		})
		routes := map[string]http.Handler{"RequireUser": syncer.RequireUser(ok), "RequireIdentity": syncer.RequireIdentity(ok), "LoadUser": syncer.LoadUser(ok)}
		do := func(route, token string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			routes[route].ServeHTTP(w, r)
			return w
		}
		// Both verified and cached before the session ends.
		for route := range routes {
			if w := do(route, ended); w.Code != 200 || w.Body.String() != sid {
				t.Fatalf("%s, %s: before the ending: %d %q", ex.name, route, w.Code, w.Body)
			}
		}
		if err := set.End(ctx, sessions.Ending{Issuer: iss.URL, SessionID: sid}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			route, token string
			code         int
			body         string
		}{
			{"RequireUser", ended, 401, ""},
			{"RequireIdentity", ended, 401, ""},
			{"LoadUser", ended, 401, ""}, // a header: the client learns its token is bad
			{"RequireUser", other, 200, "sess_other"},
			{"RequireIdentity", other, 200, "sess_other"},
			{"LoadUser", other, 200, "sess_other"},
		} {
			w := do(c.route, c.token)
			if w.Code != c.code || c.body != "" && w.Body.String() != c.body {
				t.Errorf("%s, %s: %d %q, want %d %q", ex.name, c.route, w.Code, w.Body, c.code, c.body)
			}
			if c.code == 401 && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="session ended"`) {
				t.Errorf("%s, %s: challenge %q does not say the session ended", ex.name, c.route, w.Header().Get("WWW-Authenticate"))
			}
		}
	}
}

// TestLoadUserSignsOutAnEndedSessionsCookie holds that, with the
// verifier's Sessions too, LoadUser passes a session cookie of an ended
// session on signed out (a page), while RequireUser refuses it.
func TestLoadUserSignsOutAnEndedSessionsCookie(t *testing.T) {
	ctx := context.Background()
	iss := usersynctest.NewIssuer(t)
	store := memstore.New()
	set, err := sessions.New(ctx, sessions.Config{Store: store, MaxStale: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	v := newVerifier(t, func(c *jwtverify.Config) { c.Sessions = set }, iss)
	syncer := newSyncerWith(t, store, v, func(c *usersync.Config) { c.Sessions = set })
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := usersync.IdentityFromContext(r.Context()); ok {
			io.WriteString(w, "signed in")
			return
		}
		io.WriteString(w, "signed out")
	})
	token := iss.Token(map[string]any{"sub": "user_ada", "sid": "sess_cookie"})
	if err := set.End(ctx, sessions.Ending{Issuer: iss.URL, SessionID: "sess_cookie"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    http.Handler
		code int
		body string
	}{{"LoadUser", syncer.LoadUser(page), 200, "signed out"}, {"RequireUser", syncer.RequireUser(page), 401, ""}} {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: "__session", Value: token})
		w := httptest.NewRecorder()
		c.h.ServeHTTP(w, r)
		if w.Code != c.code || c.body != "" && w.Body.String() != c.body {
			t.Errorf("%s with the cookie of an ended session: %d %q, want %d %q", c.name, w.Code, w.Body, c.code, c.body)
		}
	}
}

// TestVerifierRefusesEndedSessions holds that jwtverify.Config.Sessions
// refuses an ended session's token in Verify, cached or not.
func TestVerifierRefusesEndedSessions(t *testing.T) {
	ctx := context.Background()
	iss := usersynctest.NewIssuer(t)
	set, err := sessions.New(ctx, sessions.Config{Store: memstore.New(), MaxStale: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	for _, size := range []int{0, -1} { // the default cache, and none
		v := newVerifier(t, func(c *jwtverify.Config) { c.Sessions, c.CacheSize = set, size }, iss)
		sid := "sess_" + strings.Repeat("x", 3+size)
		token := iss.Token(map[string]any{"sid": sid})
		if _, err := v.Verify(ctx, token); err != nil {
			t.Fatalf("cache %d: before the ending: %v", size, err)
		}
		if err := set.End(ctx, sessions.Ending{Issuer: iss.URL, SessionID: sid}); err != nil {
			t.Fatal(err)
		}
		if id, err := v.Verify(ctx, token); id != nil || !errors.Is(err, usersync.ErrSessionEnded) {
			t.Fatalf("cache %d: after the ending: %v, %v; want ErrSessionEnded", size, id, err)
		}
	}
}

// extractorFunc is an Extractor of a function.
type extractorFunc func(*http.Request) (*usersync.Identity, error)

func (f extractorFunc) Identify(r *http.Request) (*usersync.Identity, error) { return f(r) }
