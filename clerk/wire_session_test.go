package clerk_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
)

// live is a fake Clerk instance over HTTP: the issuer of its session
// tokens, its Backend API, and its webhooks, delivered to the App wired
// last.
type live struct {
	fake  *clerkfake.Instance
	hook  atomic.Value                  // the http.Handler of the webhooks
	block atomic.Pointer[chan struct{}] // if set, GET /v1/sessions/{id} waits until it is closed
}

func newLive(t *testing.T) *live {
	t.Helper()
	l := &live{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := l.hook.Load().(http.Handler)
		if !ok {
			http.Error(w, "no app yet", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hook.Close)
	srv := httptest.NewUnstartedServer(nil)
	fake, err := clerkfake.New(clerkfake.Config{Issuer: "http://" + srv.Listener.Addr().String(), WebhookURL: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ch := l.block.Load(); ch != nil && strings.HasPrefix(r.URL.Path, "/v1/sessions/") {
			select {
			case <-*ch:
			case <-r.Context().Done():
			}
		}
		fake.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	l.fake = fake
	return l
}

// blockSessions makes GET /v1/sessions/{id} hang until the test ends: a
// Backend API slower than any MaxWait.
func (l *live) blockSessions(t *testing.T) {
	ch := make(chan struct{})
	l.block.Store(&ch)
	t.Cleanup(func() { close(ch) })
}

// config returns the instance's SetupConfig, with a secret key and a Set
// that never goes stale, changed by override.
func (l *live) config(override func(*clerk.SetupConfig)) clerk.SetupConfig {
	cfg := clerk.SetupConfig{
		Config: clerk.Config{
			Issuer: l.fake.Issuer(), WebhookSecrets: []string{l.fake.WebhookSecret()}, SecretKey: l.fake.SecretKey(), APIURL: l.fake.APIURL(),
		},
		Logger: quiet, CompletionWait: -1,
		EndedSessions: sessions.Config{MaxStale: time.Hour},
	}
	if override != nil {
		override(&cfg)
	}
	return cfg
}

// wire wires the instance to store, and delivers its webhooks to the App.
func (l *live) wire(t *testing.T, store usersync.Store, cfg clerk.SetupConfig) *clerk.App {
	t.Helper()
	app, err := clerk.Wire(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	l.hook.Store(app.Webhook)
	return app
}

// token returns a token of the user's session sid.
func (l *live) token(t *testing.T, sub, sid string) string {
	t.Helper()
	tok, err := l.fake.SessionToken(sub, sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call serves a GET with the token (none if "") to h.
func call(h http.Handler, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/api/me", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return serve(h, r)
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })

// Wire makes the Set and the strict mode that its store and config allow.
func TestWireSessions(t *testing.T) {
	l := newLive(t)
	mine := newSet(t, memstore.New())
	for _, tc := range []struct {
		name                  string
		store                 usersync.Store
		cfg                   func(*clerk.SetupConfig)
		wantSet, wantStrict   bool
		wantMine, wantInvalid bool
	}{
		{"a store of sessions, with a secret key", memstore.New(), nil, true, true, false, false},
		{"without a secret key", memstore.New(), func(c *clerk.SetupConfig) { c.SecretKey = "" }, true, false, false, false},
		{"a store of users only", usersOnly{memstore.New()}, nil, false, true, false, false},
		{"a Set of the app's", usersOnly{memstore.New()}, func(c *clerk.SetupConfig) { c.Config.Sessions = mine }, true, true, true, false},
		{"a bad Set setting", memstore.New(), func(c *clerk.SetupConfig) { c.EndedSessions.Poll = time.Hour }, false, false, false, true},
		{"a bad strict setting", memstore.New(), func(c *clerk.SetupConfig) { c.SessionStatus.MaxWait = -1 }, false, false, false, true},
		{"a strict rate that is not a number", memstore.New(), func(c *clerk.SetupConfig) { c.SessionStatus.MaxCallsPerSecond = math.NaN() }, false, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, err := clerk.Wire(context.Background(), tc.store, l.config(tc.cfg))
			if tc.wantInvalid {
				if !errors.Is(err, usersync.ErrInvalid) {
					t.Fatalf("Wire: %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			if (app.Sessions != nil) != tc.wantSet || (app.SessionStatus != nil) != tc.wantStrict || tc.wantMine && app.Sessions != mine {
				t.Fatalf("Sessions %v (mine: %v), SessionStatus %v", app.Sessions != nil, app.Sessions == mine, app.SessionStatus != nil)
			}
		})
	}
	// Closing an App leaves the app's own Set running.
	if err := mine.CheckSession(identity("user_a", "sess_a")); err != nil {
		t.Fatalf("the app's Set after the App closed: %v", err)
	}
}

// A session revoked at Clerk is refused at once by every way in: its
// webhook reaches the Set, whose endings the Syncer's middlewares and
// the verifier check. The user's other session goes on.
func TestAppEndSession(t *testing.T) {
	ctx := context.Background()
	l := newLive(t)
	app := l.wire(t, memstore.New(), l.config(nil))
	h := app.Syncer.RequireUser(ok)
	first, second, other := l.token(t, "user_a", "sess_a"), l.token(t, "user_a", "sess_a"), l.token(t, "user_a", "sess_b")
	for _, tok := range []string{first, second, other} {
		if w := call(h, tok); w.Code != 200 {
			t.Fatalf("before the ending: %d %s", w.Code, w.Body)
		}
	}
	if status, err := l.fake.EndSession(ctx, "sess_a", "revoked"); status != 200 || err != nil {
		t.Fatalf("EndSession: %d, %v", status, err)
	}
	for _, tok := range []string{first, second} {
		w := call(h, tok)
		if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="session ended"`) {
			t.Fatalf("a token of the revoked session: %d %q %s", w.Code, w.Header().Get("WWW-Authenticate"), w.Body)
		}
		if _, err := app.Verifier.Verify(ctx, tok); !errors.Is(err, usersync.ErrSessionEnded) {
			t.Fatalf("Verify of a token of the revoked session: %v", err)
		}
	}
	if w := call(h, other); w.Code != 200 {
		t.Fatalf("the user's other session: %d %s", w.Code, w.Body)
	}
	if _, err := app.Verifier.Verify(ctx, other); err != nil {
		t.Fatalf("Verify of the other session's token: %v", err)
	}
	// A page that also works signed out takes the ended session's cookie
	// as signed out.
	signedOut := app.Syncer.LoadUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := usersync.UserFromContext(r.Context()); ok {
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "__session", Value: first})
	if w := serve(signedOut, r); w.Code != 200 {
		t.Fatalf("LoadUser with a session cookie of the revoked session: %d", w.Code)
	}
	// An API client's header is refused, so that it learns its token is
	// bad.
	if w := call(signedOut, first); w.Code != 401 {
		t.Fatalf("LoadUser with an Authorization header of the revoked session: %d", w.Code)
	}
}

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Strict mode admits the sessions Clerk holds active, asking once per
// session and CacheFor, and refuses the others (recording the ended
// ones) or, when Clerk cannot be asked, answers 503.
//
// Its MaxWait is a minute, so that no call of a loaded machine outlasts it
// but in the tests of a failing or slow Backend API, which expect a 503
// whatever the machine's speed.
func TestSessionStatus(t *testing.T) {
	ctx := context.Background()
	type env struct {
		l      *live
		app    *clerk.App
		strict http.Handler
		clock  *clock
		errs   chan error // what the ErrorHandler got
	}
	setup := func(t *testing.T, override func(*clerk.SetupConfig)) *env {
		e := &env{l: newLive(t), clock: newClock(), errs: make(chan error, 10)}
		e.app = e.l.wire(t, memstore.New(), e.l.config(func(c *clerk.SetupConfig) {
			c.SessionStatus.Now = e.clock.Now
			c.SessionStatus.MaxWait = time.Minute
			c.ErrorHandler = func(w http.ResponseWriter, r *http.Request, status int, err error) {
				select {
				case e.errs <- err:
				default:
				}
				http.Error(w, "refused", status)
			}
			if override != nil {
				override(c)
			}
		}))
		e.strict = e.app.Syncer.RequireUser(e.app.SessionStatus.Require(ok))
		return e
	}
	ended := func(t *testing.T, e *env, sub, sid string) bool {
		t.Helper()
		err := e.app.Sessions.CheckSession(&usersync.Identity{Issuer: e.l.fake.Issuer(), Subject: sub, SessionID: sid})
		return errors.Is(err, usersync.ErrSessionEnded)
	}

	t.Run("an active session passes, and is asked about once per CacheFor", func(t *testing.T) {
		e := setup(t, nil)
		tok := e.l.token(t, "user_a", "sess_a")
		if w := call(e.strict, tok); w.Code != 200 || w.Body.String() != "ok" {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		n := e.l.fake.Requests()
		if err := e.l.fake.SetSessionStatus("sess_a", "revoked"); err != nil { // without a webhook
			t.Fatal(err)
		}
		if w := call(e.strict, tok); w.Code != 200 || e.l.fake.Requests() != n {
			t.Fatalf("within CacheFor: %d, %d calls", w.Code, e.l.fake.Requests()-n)
		}
		e.clock.Advance(5 * time.Second) // the default CacheFor
		if w := call(e.strict, tok); w.Code != 401 || e.l.fake.Requests() != n+1 {
			t.Fatalf("after CacheFor: %d, %d calls", w.Code, e.l.fake.Requests()-n)
		}
	})

	t.Run("concurrent requests of a session share one call", func(t *testing.T) {
		e := setup(t, nil)
		tok := e.l.token(t, "user_a", "sess_a")
		if active, err := e.app.SessionStatus.Active(ctx, "sess_warm"); active || err != nil { // the instance check, out of the count
			t.Fatalf("Active of an unknown session: %v, %v", active, err)
		}
		n := e.l.fake.Requests()
		var wg sync.WaitGroup
		codes := make(chan int, 16)
		for range 16 {
			wg.Go(func() { codes <- call(e.strict, tok).Code })
		}
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != 200 {
				t.Fatalf("a request: %d", c)
			}
		}
		if got := e.l.fake.Requests() - n; got != 1 {
			t.Fatalf("%d calls, want 1", got)
		}
	})

	t.Run("a session ended at Clerk without a webhook is refused and recorded", func(t *testing.T) {
		e := setup(t, nil)
		tok := e.l.token(t, "user_a", "sess_a")
		other := e.l.token(t, "user_a", "sess_b")
		for how, sid := range map[string]string{"ended": "sess_a", "replaced": "sess_b"} {
			if err := e.l.fake.SetSessionStatus(sid, how); err != nil {
				t.Fatal(err)
			}
		}
		for _, tk := range []string{tok, other} {
			w := call(e.strict, tk)
			if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="usersync", error="invalid_token", error_description="session ended"` {
				t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
			}
			if err := <-e.errs; !errors.Is(err, usersync.ErrSessionEnded) {
				t.Fatalf("the ErrorHandler got %v", err)
			}
		}
		if !ended(t, e, "user_a", "sess_a") || !ended(t, e, "user_a", "sess_b") {
			t.Fatal("the Set does not hold the endings")
		}
		// Every route refuses it now, strict or not, with no call.
		n := e.l.fake.Requests()
		if w := call(e.app.Syncer.RequireUser(ok), tok); w.Code != 401 || e.l.fake.Requests() != n {
			t.Fatalf("RequireUser after the ending: %d, %d calls", w.Code, e.l.fake.Requests()-n)
		}
	})

	t.Run("a session Clerk does not know is refused for CacheFor, not recorded", func(t *testing.T) {
		e := setup(t, nil)
		tok := e.l.token(t, "user_a", "sess_a")
		e.l.fake.RemoveSession("sess_a") // a 404: as for a session created a moment ago, at times
		w := call(e.strict, tok)
		if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="usersync", error="invalid_token", error_description="session not found"` {
			t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
		if err := <-e.errs; errors.Is(err, usersync.ErrSessionEnded) || !errors.Is(err, usersync.ErrInvalidToken) || strings.Contains(err.Error(), "sess_a") {
			t.Fatalf("the ErrorHandler got %v", err)
		}
		if ended(t, e, "user_a", "sess_a") {
			t.Fatal("a session Clerk does not know was recorded as ended")
		}
		if w := call(e.app.Syncer.RequireUser(ok), tok); w.Code != 200 {
			t.Fatalf("a route that is not strict: %d", w.Code)
		}
		// Refused without a call within CacheFor; asked again after it.
		n := e.l.fake.Requests()
		if w := call(e.strict, tok); w.Code != 401 || e.l.fake.Requests() != n {
			t.Fatalf("within CacheFor: %d, %d calls", w.Code, e.l.fake.Requests()-n)
		}
		e.l.token(t, "user_a", "sess_a") // Clerk has it now
		e.clock.Advance(5 * time.Second)
		if w := call(e.strict, tok); w.Code != 200 || e.l.fake.Requests() != n+1 {
			t.Fatalf("after CacheFor: %d, %d calls", w.Code, e.l.fake.Requests()-n)
		}
	})

	t.Run("a pending session is refused, not recorded", func(t *testing.T) {
		e := setup(t, nil)
		tok := e.l.token(t, "user_a", "sess_a")
		if err := e.l.fake.SetSessionStatus("sess_a", "pending"); err != nil {
			t.Fatal(err)
		}
		w := call(e.strict, tok)
		if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="session not active"`) {
			t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
		if err := <-e.errs; errors.Is(err, usersync.ErrSessionEnded) || !errors.Is(err, usersync.ErrInvalidToken) {
			t.Fatalf("the ErrorHandler got %v", err)
		}
		if ended(t, e, "user_a", "sess_a") {
			t.Fatal("a pending session was recorded as ended")
		}
		if active, err := e.app.SessionStatus.Active(ctx, "sess_a"); active || err != nil {
			t.Fatalf("Active: %v, %v", active, err)
		}
	})

	t.Run("without an identity, or without a session, 401", func(t *testing.T) {
		e := setup(t, func(c *clerk.SetupConfig) { c.InsecureAcceptJWTTemplates = true })
		w := call(e.app.SessionStatus.Require(ok), "")
		if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="usersync"` {
			t.Fatalf("no identity: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
		template, err := e.l.fake.Token("user_a", map[string]any{"sid": nil})
		if err != nil {
			t.Fatal(err)
		}
		if w := call(e.app.Syncer.RequireUser(ok), template); w.Code != 200 {
			t.Fatalf("a template's token behind RequireUser: %d", w.Code)
		}
		w = call(e.strict, template)
		if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="not a session token"`) {
			t.Fatalf("no session: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
		if err := e.app.SessionStatus.Check(ctx, &usersync.Identity{Issuer: "https://other.example", Subject: "user_a", SessionID: "sess_a"}); !errors.Is(err, usersync.ErrInvalidToken) {
			t.Fatalf("an identity of another issuer: %v", err)
		}
	})

	t.Run("Clerk out of reach: 503 with Retry-After, never let through", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			status     int
			retryAfter time.Duration
			want       string
		}{
			{"5xx", 503, 0, "5"},
			{"a 429 longer than MaxWait", 429, 30 * time.Second, "30"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := setup(t, func(c *clerk.SetupConfig) { c.SessionStatus.MaxWait = 0 }) // the default, 2 s: below the 429's
				tok := e.l.token(t, "user_a", "sess_a")
				e.l.fake.Fail(100, tc.status, tc.retryAfter)
				w := call(e.strict, tok)
				if w.Code != 503 || w.Header().Get("Retry-After") != tc.want || w.Body.String() == "ok" {
					t.Fatalf("%d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
				}
				err := <-e.errs
				var status interface{ HTTPStatus() int }
				if !errors.As(err, &status) || status.HTTPStatus() != 503 || !errors.Is(err, clerk.ErrAPI) ||
					strings.Contains(err.Error(), "sess_a") || strings.Contains(err.Error(), e.l.fake.SecretKey()) {
					t.Fatalf("the ErrorHandler got %v", err)
				}
				if ended(t, e, "user_a", "sess_a") {
					t.Fatal("an unanswered session was recorded as ended")
				}
			})
		}
	})

	t.Run("Clerk too slow: 503 once MaxWait is over, never let through", func(t *testing.T) {
		e := setup(t, func(c *clerk.SetupConfig) { c.SessionStatus.MaxWait = 50 * time.Millisecond })
		tok := e.l.token(t, "user_a", "sess_a")
		e.l.blockSessions(t) // it never answers: MaxWait surely expires
		w := call(e.strict, tok)
		if w.Code != 503 || w.Header().Get("Retry-After") != "5" || w.Body.String() == "ok" {
			t.Fatalf("%d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		err := <-e.errs
		var status interface{ HTTPStatus() int }
		if !errors.As(err, &status) || status.HTTPStatus() != 503 || !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "sess_a") {
			t.Fatalf("the ErrorHandler got %v", err)
		}
		if ended(t, e, "user_a", "sess_a") {
			t.Fatal("an unanswered session was recorded as ended")
		}
	})

	t.Run("over MaxCallsPerSecond: 503 with Retry-After, and no call", func(t *testing.T) {
		// One call, then one every 1,000 s.
		e := setup(t, func(c *clerk.SetupConfig) { c.SessionStatus.MaxCallsPerSecond = 0.001 })
		if _, err := e.app.Users.Count(ctx); err != nil { // the instance check, out of the bucket
			t.Fatal(err)
		}
		if w := call(e.strict, e.l.token(t, "user_a", "sess_a")); w.Code != 200 {
			t.Fatalf("the first call: %d %s", w.Code, w.Body)
		}
		n := e.l.fake.Requests()
		w := call(e.strict, e.l.token(t, "user_a", "sess_b"))
		retry, _ := strconv.Atoi(w.Header().Get("Retry-After"))
		if w.Code != 503 || retry < 900 || retry > 1000 || e.l.fake.Requests() != n {
			t.Fatalf("the second: %d Retry-After %q, %d calls", w.Code, w.Header().Get("Retry-After"), e.l.fake.Requests()-n)
		}
		err := <-e.errs
		var status interface{ HTTPStatus() int }
		if !errors.As(err, &status) || status.HTTPStatus() != 503 || !errors.Is(err, clerk.ErrAPI) || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), "MaxCallsPerSecond") || strings.Contains(err.Error(), "sess_b") {
			t.Fatalf("the ErrorHandler got %v", err)
		}
		// The first session's answer is still cached: no call needed.
		if w := call(e.strict, e.l.token(t, "user_a", "sess_a")); w.Code != 200 {
			t.Fatalf("the first session again: %d", w.Code)
		}
	})

	t.Run("calls wait for their turn under MaxCallsPerSecond", func(t *testing.T) {
		// The default: 10 a second, 10 at once.
		e := setup(t, nil)
		if _, err := e.app.Users.Count(ctx); err != nil { // the instance check, out of the bucket
			t.Fatal(err)
		}
		const sessions = 15
		for i := range sessions {
			e.l.token(t, "user_a", fmt.Sprint("sess_", i))
		}
		n := e.l.fake.Requests()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		for i := range sessions {
			wg.Go(func() {
				if active, err := e.app.SessionStatus.Active(ctx, fmt.Sprint("sess_", i)); !active || err != nil {
					errs <- fmt.Errorf("Active: %v, %v", active, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// 10 at once, then one every 100 ms: the 15th starts 500 ms after
		// the first at the soonest, however fast the machine.
		if took := time.Since(start); took < 450*time.Millisecond || e.l.fake.Requests()-n != sessions {
			t.Fatalf("%d calls in %v", e.l.fake.Requests()-n, took)
		}
	})
}

// Strict mode needs a secret key.
func TestSessionStatusNeedsASecretKey(t *testing.T) {
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.SessionStatus(clerk.SessionStatusConfig{}); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("without a secret key: %v", err)
	}
}

// Without a secret key App.SessionStatus is nil: its Require panics when
// the route is wired, not on each request, and Check and Active fail
// instead of panicking.
func TestSessionStatusNil(t *testing.T) {
	l := newLive(t)
	app := l.wire(t, memstore.New(), l.config(func(c *clerk.SetupConfig) { c.SecretKey = "" }))
	if app.SessionStatus != nil {
		t.Fatal("App.SessionStatus without a secret key")
	}
	const want = "clerk: App.SessionStatus is nil: the strict mode needs Config.SecretKey"
	func() {
		defer func() {
			if r := recover(); fmt.Sprint(r) != want {
				t.Fatalf("Require recovered %v, want a panic %q", r, want)
			}
		}()
		app.SessionStatus.Require(ok)
	}()
	ctx := context.Background()
	if err := app.SessionStatus.Check(ctx, identity("user_a", "sess_a")); err == nil || err.Error() != want {
		t.Fatalf("Check: %v", err)
	}
	if active, err := app.SessionStatus.Active(ctx, "sess_a"); active || err == nil || err.Error() != want {
		t.Fatalf("Active: %v, %v", active, err)
	}
	var logs syncBuffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("wired", "strict", app.SessionStatus)
	if got := fmt.Sprint(app.SessionStatus); got != "<nil>" || strings.Contains(logs.String(), "panic") {
		t.Fatalf("printed %q, logged %q", got, logs.String())
	}
}

// A store that keeps no ended sessions gives no Set: the session endings
// Clerk sends are answered 200 and not recorded, which is logged once,
// without an ID.
func TestWireWithoutASetLogsIgnoredEndings(t *testing.T) {
	ctx := context.Background()
	l := newLive(t)
	var logs syncBuffer
	app := l.wire(t, usersOnly{memstore.New()}, l.config(func(c *clerk.SetupConfig) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) }))
	if app.Sessions != nil {
		t.Fatal("a Set without a store of sessions")
	}
	for _, sid := range []string{"sess_a", "sess_b"} {
		l.token(t, "user_a", sid)
		if status, err := l.fake.EndSession(ctx, sid, "revoked"); status != 200 || err != nil {
			t.Fatalf("EndSession: %d, %v", status, err)
		}
	}
	got := logs.String()
	if n := strings.Count(got, "clerk.Config.Sessions is not set"); n != 1 || strings.Contains(got, "sess_a") || strings.Contains(got, "sess_b") {
		t.Fatalf("logged it %d times: %s", n, got)
	}
}

// countingStore counts the reads of the ended sessions.
type countingStore struct {
	*memstore.Store
	reads atomic.Int64
}

func (c *countingStore) EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) ([]sessions.Ending, error) {
	c.reads.Add(1)
	return c.Store.EndedSessions(ctx, at, seq, limit)
}

// TestSessionsOutliveRun holds that the ended sessions are read until
// Close, not until Run returns, so that a server shutting down after Run
// finishes its requests; and that Close stops them.
func TestSessionsOutliveRun(t *testing.T) {
	l := newLive(t)
	store := &countingStore{Store: memstore.New()}
	app := l.wire(t, store, l.config(func(c *clerk.SetupConfig) {
		c.EndedSessions = sessions.Config{Poll: 5 * time.Millisecond, MaxStale: time.Hour}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- app.Run(ctx) }()
	cancel()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	after := store.reads.Load()
	waitFor(t, "no read of the ended sessions after Run returned", func() bool { return store.reads.Load() > after+3 })
	app.Close()
	closed := store.reads.Load()
	time.Sleep(50 * time.Millisecond) // ten Polls
	if n := store.reads.Load(); n != closed {
		t.Fatalf("%d reads of the ended sessions after Close", n-closed)
	}
}

// waitFor waits until cond holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %s", what)
		}
	}
}
