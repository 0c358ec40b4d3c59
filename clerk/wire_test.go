package clerk_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/reconcile"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/usersynctest"
)

// instance is a fake Clerk instance: its Frontend API (the issuer of its
// session tokens), its Backend API, behind a proxy that counts and can
// hold the requests, and its webhooks' signer.
type instance struct {
	iss    *usersynctest.Issuer
	api    *clerktest.API
	sender *clerktest.WebhookSender
	apiURL string

	mu          sync.Mutex
	requests    []string // the Backend API's paths, in order
	inFlight    int
	maxInFlight int
	hold        func(path string) // if set, runs before a request is served
}

func newInstance(t *testing.T) *instance {
	t.Helper()
	in := &instance{iss: usersynctest.NewIssuer(t), api: clerktest.NewAPI(t), sender: clerktest.NewWebhookSender(t)}
	in.api.SetJWKS(get(t, in.iss.JWKSURL())) // the secret key is the issuer's instance's
	srv := httptest.NewServer(http.HandlerFunc(in.serve))
	t.Cleanup(srv.Close)
	in.apiURL = srv.URL + "/v1"
	return in
}

func (in *instance) serve(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	in.requests = append(in.requests, strings.TrimPrefix(r.URL.Path, "/v1"))
	in.inFlight++
	in.maxInFlight = max(in.maxInFlight, in.inFlight)
	hold := in.hold
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.inFlight--
		in.mu.Unlock()
	}()
	if hold != nil {
		hold(r.URL.Path)
	}
	in.api.ServeHTTP(w, r)
}

// lookups returns how many requests of GET /users/{id} the API has had.
func (in *instance) lookups() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, p := range in.requests {
		if strings.HasPrefix(p, "/users/") && p != "/users/count" {
			n++
		}
	}
	return n
}

// config returns the instance's SetupConfig, with a secret key, changed
// by override. Its Set of ended sessions never goes stale, however slow
// the machine.
func (in *instance) config(override func(*clerk.SetupConfig)) clerk.SetupConfig {
	cfg := clerk.SetupConfig{
		Config:        clerk.Config{Issuer: in.iss.URL, WebhookSecrets: []string{in.sender.Secret}, SecretKey: in.api.SecretKey, APIURL: in.apiURL},
		Logger:        quiet,
		EndedSessions: sessions.Config{MaxStale: time.Hour},
	}
	if override != nil {
		override(&cfg)
	}
	return cfg
}

// wire wires the instance to store, with the App's completions reported on
// the returned channel.
func (in *instance) wire(t *testing.T, store usersync.Store, cfg clerk.SetupConfig) (*clerk.App, <-chan struct{}) {
	t.Helper()
	app, err := clerk.Wire(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	ended := make(chan struct{}, 100)
	if cfg.CompletionWait >= 0 {
		clerk.OnCompletionEnded(app, func() { ended <- struct{}{} })
	}
	return app, ended
}

// run runs app until the test ends, and returns a function that stops it
// and returns Run's error once Run has returned.
func run(t *testing.T, app *clerk.App) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	clerk.WaitRunning(app)
	var err error
	var once sync.Once
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// me serves the current user behind app's RequireUser: the user the
// request went on with.
func me(ctx context.Context, t *testing.T, app *clerk.App, token string) usersync.User {
	t.Helper()
	var u usersync.User
	h := app.Syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ = usersync.UserFromContext(r.Context())
	}))
	r := httptest.NewRequestWithContext(ctx, "GET", "/api/me", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	if w := serve(h, r); w.Code != http.StatusOK {
		t.Fatalf("GET /api/me: %d %s", w.Code, w.Body)
	}
	return u
}

func stored(t *testing.T, store usersync.Store, issuer, subject string) (usersync.User, error) {
	t.Helper()
	return store.GetByTokenIdentifier(context.Background(), usersync.TokenIdentifier(issuer, subject))
}

var ada = clerktest.User{
	ID: "user_ada", FirstName: clerktest.Str("Ada"), LastName: clerktest.Str("Lovelace"), Email: "ada@example.com",
	ExternalID: "legacy-42", PublicMetadata: json.RawMessage(`{"plan":"pro"}`),
	UpdatedAt: time.Now().Add(-time.Hour).Truncate(time.Millisecond),
}

// Wire builds the parts the config and the store allow, and refuses a
// config it cannot wire.
func TestWire(t *testing.T) {
	in := newInstance(t)
	for _, tc := range []struct {
		name           string
		store          usersync.Store
		cfg            func(*clerk.SetupConfig)
		wantUsers      bool
		wantReconciler bool
		wantFeed       bool
		wantInvalid    bool
	}{
		{"with a secret key", memstore.New(), nil, true, true, true, false},
		{"without a secret key", memstore.New(), func(c *clerk.SetupConfig) { c.SecretKey = "" }, false, false, true, false},
		{"a store without a feed or leases", struct{ usersync.Store }{memstore.New()}, nil, true, false, false, false},
		{"no issuer", memstore.New(), func(c *clerk.SetupConfig) { c.Issuer = "" }, false, false, false, true},
		{"no store", nil, nil, false, false, false, true},
		{"a reconcile without a secret key", memstore.New(), func(c *clerk.SetupConfig) { c.SecretKey, c.ReconcileEvery = "", time.Hour }, false, false, false, true},
		{"a negative reconcile interval", memstore.New(), func(c *clerk.SetupConfig) { c.ReconcileEvery = -time.Hour }, false, false, false, true},
		{"a reconcile over a store without leases", struct{ usersync.Store }{memstore.New()}, func(c *clerk.SetupConfig) { c.ReconcileEvery = time.Hour }, false, false, false, true},
		{"a bad feed setting", memstore.New(), func(c *clerk.SetupConfig) { c.Feed.BatchSize = -1 }, false, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, err := clerk.Wire(context.Background(), tc.store, in.config(tc.cfg))
			if tc.wantInvalid {
				if !errors.Is(err, usersync.ErrInvalid) {
					t.Fatalf("Wire: %v, want ErrInvalid", err)
				}
				if err != nil && strings.Contains(err.Error(), in.api.SecretKey) {
					t.Fatal("the error shows the secret key")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			if app.Provider == nil || app.Verifier == nil || app.Syncer == nil || app.Webhook == nil {
				t.Fatalf("missing parts: %+v", app)
			}
			if (app.Users != nil) != tc.wantUsers || (app.Reconciler != nil) != tc.wantReconciler || (app.Feed != nil) != tc.wantFeed {
				t.Fatalf("Users %v, Reconciler %v, Feed %v; want %v, %v, %v", app.Users != nil, app.Reconciler != nil, app.Feed != nil,
					tc.wantUsers, tc.wantReconciler, tc.wantFeed)
			}
		})
	}
}

// A webhook and a token of one person, through the App, make one row; the
// OnChange hook and the feed's consumers see its changes.
func TestAppWebhookAndToken(t *testing.T) {
	in := newInstance(t)
	store := memstore.New()
	var mu sync.Mutex
	var changes []usersync.Outcome
	app, _ := in.wire(t, store, in.config(func(c *clerk.SetupConfig) {
		c.SecretKey = "" // no Backend API
		c.OnChange = func(_ context.Context, ch usersync.Change) {
			mu.Lock()
			changes = append(changes, ch.Outcome)
			mu.Unlock()
		}
	}))
	fed := make(chan usersync.Change, 10)
	if err := app.Feed.Handle("test", func(_ context.Context, c usersync.Change) error { fed <- c; return nil }); err != nil {
		t.Fatal(err)
	}
	run(t, app)

	if w := serve(app.Webhook, in.sender.Request("/clerk-users-webhook", clerktest.UserEvent("user.created", ada))); w.Code != http.StatusOK {
		t.Fatalf("webhook: %d %s", w.Code, w.Body)
	}
	u := me(context.Background(), t, app, in.iss.Token(map[string]any{"sub": ada.ID}))
	if u.Name != "Ada Lovelace" || u.Email != "ada@example.com" {
		t.Fatalf("the request's user: %+v", u)
	}
	if c := <-fed; c.Outcome != usersync.Created || c.UserID != u.ID {
		t.Fatalf("the feed delivered %+v, want the creation of %s", c, u.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 1 || changes[0] != usersync.Created {
		t.Fatalf("OnChange saw %v", changes)
	}
}

// A user whose session token (Clerk's default one: no name, no email)
// comes before the webhook is completed from the Backend API, once, or not
// at all when completion is off.
func TestAppCompletesTokenUsers(t *testing.T) {
	for _, tc := range []struct {
		name        string
		wait        time.Duration
		inAPI       bool
		wantName    string
		wantLookups int
	}{
		{"completed on the first request", time.Minute, true, "Ada Lovelace", 1},
		{"completion off", -1, true, "Anonymous", 0},
		{"a user Clerk no longer has is left as the token made them", time.Minute, false, "Anonymous", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance(t)
			if tc.inAPI {
				in.api.Put(ada)
			}
			store := memstore.New()
			app, ended := in.wire(t, store, in.config(func(c *clerk.SetupConfig) { c.CompletionWait = tc.wait }))
			stop := run(t, app)
			token := in.iss.Token(map[string]any{"sub": ada.ID})
			u := me(context.Background(), t, app, token)
			if tc.wait >= 0 {
				<-ended
			}
			if u.Name != tc.wantName {
				t.Errorf("the first request's user is named %q, want %q", u.Name, tc.wantName)
			}
			again := me(context.Background(), t, app, token)
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			s, err := stored(t, store, in.iss.URL, ada.ID)
			if err != nil {
				t.Fatalf("stored: %v", err) // never deleted
			}
			if s.Name != tc.wantName || again.ID != u.ID || s.ID != u.ID {
				t.Errorf("stored %+v, then %+v", s, again)
			}
			if tc.wantName == "Ada Lovelace" && (s.Email != "ada@example.com" || !s.EmailVerified || s.ExternalID != "legacy-42" ||
				string(s.Metadata) != `{"plan":"pro"}` || s.Version != usersync.Version(ada.UpdatedAt.UnixMilli())) {
				t.Errorf("not completed as the API has it: %+v", s)
			}
			if n := in.lookups(); n != tc.wantLookups {
				t.Errorf("%d lookups, want %d", n, tc.wantLookups)
			}
		})
	}
}

// A request waits for its user's completion at most CompletionWait; the
// completion ends in the background, whatever came meanwhile: nothing, the
// webhook (whose write it does not roll back), or a delete (which it does
// not undo).
func TestAppCompletionInTheBackground(t *testing.T) {
	for _, tc := range []struct {
		name      string
		meanwhile []byte // a webhook delivered while the lookup is under way
		wantName  string
		wantErr   error
	}{
		{"nothing", nil, "Ada Lovelace", nil},
		{"the webhook", clerktest.UserEvent("user.created", ada), "Ada Lovelace", nil},
		{"a newer webhook", clerktest.UserEvent("user.updated", func() clerktest.User {
			u := ada
			u.FirstName, u.UpdatedAt = clerktest.Str("Augusta"), ada.UpdatedAt.Add(time.Minute)
			return u
		}()), "Augusta Lovelace", nil},
		{"a delete", clerktest.UserDeletedEvent(ada.ID), "", usersync.ErrDeleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance(t)
			in.api.Put(ada)
			looking, release := make(chan struct{}), make(chan struct{})
			in.hold = func(path string) {
				if strings.HasSuffix(path, "/users/"+ada.ID) {
					close(looking)
					<-release
				}
			}
			store := memstore.New()
			app, ended := in.wire(t, store, in.config(func(c *clerk.SetupConfig) { c.CompletionWait = time.Millisecond }))
			run(t, app)

			// The request goes on while the lookup is held, and ends.
			ctx, cancel := context.WithCancel(context.Background())
			u := me(ctx, t, app, in.iss.Token(map[string]any{"sub": ada.ID}))
			cancel()
			if u.Name != "Anonymous" || u.Email != "" {
				t.Fatalf("the request's user: %+v, want the token's", u)
			}
			<-looking
			if tc.meanwhile != nil {
				if w := serve(app.Webhook, in.sender.Request("/", tc.meanwhile)); w.Code != http.StatusOK {
					t.Fatalf("webhook: %d %s", w.Code, w.Body)
				}
			}
			close(release)
			<-ended
			s, err := stored(t, store, in.iss.URL, ada.ID)
			if !errors.Is(err, tc.wantErr) || (err == nil && (s.Name != tc.wantName || s.ID != u.ID || s.ExternalID != "legacy-42")) {
				t.Fatalf("stored %+v, %v; want %q, %v", s, err, tc.wantName, tc.wantErr)
			}
		})
	}
}

// Concurrent first requests of one person make one lookup.
func TestAppConcurrentFirstRequestsLookUpOnce(t *testing.T) {
	in := newInstance(t)
	in.api.Put(ada)
	store := memstore.New()
	app, ended := in.wire(t, store, in.config(func(c *clerk.SetupConfig) { c.CompletionWait = time.Minute }))
	stop := run(t, app)
	token := in.iss.Token(map[string]any{"sub": ada.ID})
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Go(func() { ids[i] = me(context.Background(), t, app, token).ID })
	}
	wg.Wait()
	<-ended
	stop()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("the requests saw users %v", ids)
		}
	}
	if n := in.lookups(); n != 1 {
		t.Fatalf("%d lookups, want 1", n)
	}
	if s, err := stored(t, store, in.iss.URL, ada.ID); err != nil || s.Name != "Ada Lovelace" {
		t.Fatalf("stored %+v, %v", s, err)
	}
}

// A 429 holds every completion until its Retry-After has passed: no
// request is made meanwhile, and the completions that queued go one at a
// time after it.
func TestAppCompletionHonoursRetryAfter(t *testing.T) {
	in := newInstance(t)
	users := []clerktest.User{ada, {ID: "user_bob", FirstName: clerktest.Str("Bob"), UpdatedAt: ada.UpdatedAt}, {ID: "user_cy", FirstName: clerktest.Str("Cy"), UpdatedAt: ada.UpdatedAt}}
	names := map[string]string{"user_ada": "Ada Lovelace", "user_bob": "Bob", "user_cy": "Cy"}
	in.api.Put(users...)
	store := memstore.New()
	app, ended := in.wire(t, store, in.config(func(c *clerk.SetupConfig) { c.CompletionWait = time.Millisecond }))
	var mu sync.Mutex
	var waits []time.Duration
	sleeping, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	clerk.SetSleep(app.Users, func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		first.Do(func() { close(sleeping) })
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	stop := run(t, app)

	in.api.Fail(1, http.StatusTooManyRequests, 2*time.Second) // the first request of the list
	me(context.Background(), t, app, in.iss.Token(map[string]any{"sub": users[0].ID}))
	<-sleeping
	for _, u := range users[1:] {
		me(context.Background(), t, app, in.iss.Token(map[string]any{"sub": u.ID}))
	}
	in.mu.Lock()
	during := len(in.requests)
	in.mu.Unlock()
	close(release)
	for range users {
		<-ended
	}
	stop()

	if during != 1 {
		t.Errorf("%d requests before Retry-After had passed, want only the one that got the 429", during)
	}
	if len(waits) != 1 || waits[0] != 2*time.Second {
		t.Errorf("waits %v, want one of Retry-After, 2s", waits)
	}
	in.mu.Lock()
	if in.maxInFlight != 1 {
		t.Errorf("%d requests in flight at once, want 1", in.maxInFlight)
	}
	in.mu.Unlock()
	if n := in.lookups(); n != len(users) {
		t.Errorf("%d lookups, want %d", n, len(users))
	}
	for _, u := range users {
		if s, err := stored(t, store, in.iss.URL, u.ID); err != nil || s.Name != names[u.ID] {
			t.Errorf("stored %+v, %v; want %q", s, err, names[u.ID])
		}
	}
}

// Run runs every part until its context ends or Close is called, and
// returns when all of it has stopped: no goroutine of usersync's is left.
// An App that never runs is stopped by Close.
func TestAppRunStops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		run     bool
		stop    func(cancel context.CancelFunc, app *clerk.App)
		wantErr error
	}{
		{"Run until its context ends", true, func(cancel context.CancelFunc, _ *clerk.App) { cancel() }, context.Canceled},
		{"Run until Close", true, func(_ context.CancelFunc, app *clerk.App) { app.Close() }, nil},
		{"Close without Run", false, func(_ context.CancelFunc, app *clerk.App) { app.Close() }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance(t)
			in.api.Put(ada)
			before := goroutines()
			store := memstore.New()
			reconciled := make(chan struct{})
			var once sync.Once
			app, ended := in.wire(t, store, in.config(func(c *clerk.SetupConfig) {
				c.ReconcileEvery = time.Hour
				c.Reconcile.OnProgress = func(r reconcile.Report) {
					if !r.Finished.IsZero() {
						once.Do(func() { close(reconciled) })
					}
				}
			}))
			fed := make(chan usersync.Change, 10)
			app.Feed.Handle("test", func(_ context.Context, c usersync.Change) error { fed <- c; return nil })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			if tc.run {
				go func() { done <- app.Run(ctx) }()
				clerk.WaitRunning(app)
				<-reconciled // the reconcile ran: it stored Ada
				if c := <-fed; c.Outcome != usersync.Created {
					t.Fatalf("the feed delivered %+v", c)
				}
				// A user the API lacks: looked up, left as the token made them.
				me(context.Background(), t, app, in.iss.Token(map[string]any{"sub": "user_new"}))
				<-ended
			}
			tc.stop(cancel, app)
			if tc.run {
				if err := <-done; !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
					t.Fatalf("Run: %v, want %v", err, tc.wantErr)
				}
				if err := app.Run(context.Background()); !errors.Is(err, usersync.ErrInvalid) {
					t.Fatalf("Run again: %v", err)
				}
			}
			app.Close() // again: harmless
			if left := leaked(before); len(left) > 0 {
				t.Fatalf("goroutines left running:\n%s", strings.Join(left, "\n\n"))
			}
			// The parts that serve requests still work, with the keys they have.
			if u := me(context.Background(), t, app, in.iss.Token(map[string]any{"sub": "user_late"})); u.Name != "Anonymous" {
				t.Fatalf("after Run: %+v", u)
			}
		})
	}
}

// goroutines returns the stacks of every goroutine, by goroutine ID.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	m := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if f := strings.Fields(g); len(f) > 1 && f[0] == "goroutine" {
			m[f[1]] = g
		}
	}
	return m
}

// leaked returns the stacks of the goroutines, not in before, that run
// code of usersync's packages (not of the tests and their fakes). A
// goroutine that Run or Close waited for may still be returning from its
// last deferred call: it gets a while to go, which only a leak outlasts.
func leaked(before map[string]string) []string {
	ours := func(stack string) bool {
		for _, line := range strings.Split(stack, "\n") {
			if strings.HasPrefix(line, "github.com/usersync/usersync/") && !strings.Contains(line, "_test.") &&
				!strings.Contains(line, "clerktest.") && !strings.Contains(line, "usersynctest.") && !strings.Contains(line, "/internal/clerkfake.") {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for id, stack := range goroutines() {
			if _, old := before[id]; !old && ours(stack) {
				left = append(left, stack)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		runtime.Gosched()
	}
}
