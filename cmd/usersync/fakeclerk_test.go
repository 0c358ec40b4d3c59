package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/memstore"
)

// lockedBuffer is a bytes.Buffer safe for a command's goroutines, which
// tells when a text appears in it.
type lockedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	waiters map[string]chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.b.Write(p)
	l.notifyLocked()
	return n, err
}

// waitFor returns a channel closed once s has been written.
func (l *lockedBuffer) waitFor(s string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waiters == nil {
		l.waiters = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	l.waiters[s] = ch
	l.notifyLocked()
	return ch
}

func (l *lockedBuffer) notifyLocked() {
	for s, ch := range l.waiters {
		if strings.Contains(l.b.String(), s) {
			close(ch)
			delete(l.waiters, s)
		}
	}
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const usersFile = `[
  {"object": "user", "id": "user_ada", "first_name": "Ada", "last_name": "Lovelace", "external_id": "legacy-7",
   "primary_email_address_id": "idn_ada",
   "email_addresses": [{"id": "idn_ada", "object": "email_address", "email_address": "ada@example.com",
                        "verification": {"status": "verified", "strategy": "email_code"}, "linked_to": []}],
   "phone_numbers": [], "public_metadata": {}, "private_metadata": {}, "unsafe_metadata": {},
   "created_at": 1716883200000, "updated_at": 1716883500000},
  {"id": "user_bob", "username": "bob"}
]`

// startFakeClerk runs "usersync fake-clerk" with args until the test ends
// and returns the variables it printed (a comment as a name without a
// value), and its stderr; stop stops it and
// returns its exit code.
func startFakeClerk(t *testing.T, args ...string) (env map[string]string, stderr *lockedBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	stderr = new(lockedBuffer)
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, append([]string{"fake-clerk"}, args...), func(string) string { return "" }, outW, stderr)
		outW.Close()
	}()
	// Four lines: NAME=value, or a comment for a secret given by a flag.
	env = map[string]string{}
	lines := bufio.NewScanner(outR)
	for len(env) < 4 && lines.Scan() {
		k, v, _ := strings.Cut(lines.Text(), "=")
		env[k] = v
	}
	go io.Copy(io.Discard, outR)
	if len(env) < 4 {
		cancel()
		t.Fatalf("fake-clerk printed %q; stderr %q (exit %d)", env, stderr.String(), <-code)
	}
	stopped := false
	stop = func() int {
		stopped = true
		cancel()
		return <-code
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return env, stderr, stop
}

// The command serves a fake Clerk that the library trusts: its users reach
// the store by webhook at start, its token verifies, its Backend API
// lists the users; it stops, exit 0, when its context ends.
func TestFakeClerkCommand(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/users.json", []byte(usersFile), 0o600); err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	var syncer *usersync.Syncer
	var webhook http.Handler
	ready := make(chan struct{})    // closed once the app is wired
	delivered := make(chan int, 16) // each delivery's status
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		if r.URL.Path == "/api/me" {
			syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				u, _ := usersync.UserFromContext(r.Context())
				json.NewEncoder(w).Encode(u)
			})).ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		webhook.ServeHTTP(rec, r)
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		delivered <- rec.Code
	}))
	defer app.Close()

	env, stderr, stop := startFakeClerk(t, "-addr", "127.0.0.1:0", "-users", dir+"/users.json",
		"-webhook-url", app.URL+"/clerk-users-webhook", "-send-users")
	for _, k := range []string{"CLERK_ISSUER", "CLERK_API_URL", "CLERK_SECRET_KEY", "CLERK_WEBHOOK_SECRET"} {
		if env[k] == "" {
			t.Fatalf("no %s in %q", k, env)
		}
	}
	var err error
	syncer, webhook, err = clerk.Setup(ctx, store, clerk.SetupConfig{Config: clerk.Config{
		Issuer: env["CLERK_ISSUER"], WebhookSecrets: []string{env["CLERK_WEBHOOK_SECRET"]},
	}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)

	// -send-users: a user.created of each user of the file.
	for range 2 {
		if code := <-delivered; code != 200 {
			t.Fatalf("a webhook of -send-users answered %d", code)
		}
	}
	issuer := env["CLERK_ISSUER"]
	for _, tc := range []struct{ id, name, email string }{
		{"user_ada", "Ada Lovelace", "ada@example.com"},
		{"user_bob", "bob", ""},
	} {
		u, err := store.GetByTokenIdentifier(ctx, usersync.TokenIdentifier(issuer, tc.id))
		if err != nil || u.Name != tc.name || u.Email != tc.email {
			t.Fatalf("%s stored as %+v, %v", tc.id, u, err)
		}
	}

	// A token of POST /fake/tokens signs the user in.
	resp, err := http.Post(issuer+"/fake/tokens?sub=user_ada", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ JWT string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	r, _ := http.NewRequest("GET", app.URL+"/api/me", nil)
	r.Header.Set("Authorization", "Bearer "+tok.JWT)
	resp, err = http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"Ada Lovelace"`) {
		t.Fatalf("GET /api/me with the fake's token: %d %s", resp.StatusCode, body)
	}

	// POST /fake/send: a change reaches the store.
	resp, err = http.Post(issuer+"/fake/send", "application/json", strings.NewReader(`{"type":"user.deleted","user":{"id":"user_bob"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if code := <-delivered; code != 200 || resp.StatusCode != 200 || string(body) != `{"sent":true,"status":200}` {
		t.Fatalf("POST /fake/send: %d %s, delivered %d", resp.StatusCode, body, code)
	}
	if _, err := store.GetByTokenIdentifier(ctx, usersync.TokenIdentifier(issuer, "user_bob")); !errors.Is(err, usersync.ErrDeleted) {
		t.Fatalf("user_bob after user.deleted: %v", err)
	}

	// The Backend API, as reconcile uses it.
	p, err := clerk.New(clerk.Config{Issuer: issuer, SecretKey: env["CLERK_SECRET_KEY"], APIURL: env["CLERK_API_URL"]})
	if err != nil {
		t.Fatal(err)
	}
	list, err := p.UserList()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := list.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v; want 1 (user_bob deleted)", n, err)
	}

	if code := stop(); code != 0 {
		t.Fatalf("exit %d on a cancelled context; stderr %q", code, stderr.String())
	}
	errOut := stderr.String()
	for _, want := range []string{"with 2 users on " + issuer, "not for production", "sent a user.created of each of the 2 users", "stopped"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	if strings.Contains(errOut, env["CLERK_SECRET_KEY"]) || strings.Contains(errOut, env["CLERK_WEBHOOK_SECRET"]) || strings.Contains(errOut, "ada@example.com") {
		t.Errorf("stderr shows a secret or personal data: %q", errOut)
	}
}

// Given secrets are used and not printed; -url is the issuer.
func TestFakeClerkCommandSettings(t *testing.T) {
	const key, secret = "sk_test_fixed", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	env, _, stop := startFakeClerk(t, "-secret-key", key, "-webhook-secret", secret, "-url", "http://localhost:1")
	// The URL is not where it listens: only the printed values are checked.
	want := map[string]string{
		"CLERK_ISSUER": "http://localhost:1", "CLERK_API_URL": "http://localhost:1/v1",
		"# CLERK_SECRET_KEY: as -secret-key": "", "# CLERK_WEBHOOK_SECRET: as -webhook-secret": "",
	}
	if !maps.Equal(env, want) {
		t.Fatalf("printed %q, want %q", env, want)
	}
	for k, v := range env {
		if strings.Contains(k+v, key) || strings.Contains(k+v, secret) {
			t.Fatalf("printed the given secret: %s=%s", k, v)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// -send-users tries again while the app is out of reach, until stopped.
func TestFakeClerkCommandRetries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/users.json", []byte(usersFile), 0o600); err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there now
	_, stderr, stop := startFakeClerk(t, "-users", dir+"/users.json", "-webhook-url", down.URL, "-send-users")
	<-stderr.waitFor("-webhook-url is out of reach; trying again")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d; stderr %q", code, stderr.String())
	}
	if errOut := stderr.String(); strings.Contains(errOut, "sent a user.created") || !strings.Contains(errOut, "stopped") {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestFakeClerkCommandErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/bad.json", []byte(`[{"first_name":"no id"}]`), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"-send-users without -webhook-url", []string{"-send-users"}, 2, "-send-users needs -webhook-url"},
		{"a stray argument", []string{"now"}, 2, "unexpected arguments"},
		{"a users file that is not there", []string{"-users", dir + "/none.json"}, 1, "-users: open"},
		{"a users file without ids", []string{"-users", dir + "/bad.json"}, 1, `-users: clerkfake: user #1: no "id"`},
		{"a live secret key", []string{"-secret-key", "sk_live_realsecret"}, 1, "a live key"},
		{"a malformed webhook secret", []string{"-webhook-secret", "whsec_%%%realsecret%%%"}, 1, "not whsec_"},
		{"an issuer with a path", []string{"-url", "http://127.0.0.1:1/x"}, 1, "without a path"},
		{"a bad -addr", []string{"-addr", "256.0.0.1:0"}, 1, "listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(nil, append([]string{"fake-clerk"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, want %d; output %q %q, want %q", code, tc.code, out, errOut, tc.want)
			}
			if strings.Contains(out+errOut, "realsecret") {
				t.Fatal("the output shows the secret")
			}
		})
	}
	code, _, errOut := runCmd(nil, "fake-clerk", "-h")
	if code != 0 || !strings.Contains(errOut, "/fake/tokens") || !strings.Contains(errOut, "-webhook-url") {
		t.Fatalf("fake-clerk -h: %d %q", code, errOut)
	}
}
