package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/dburl"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
	"github.com/usersync/usersync/usersynctest"
)

// TestBinaryOnServers builds the example and runs it against PostgreSQL
// and MariaDB, as a user would with DATABASE_URL, in a schema or database
// of the test's own.
func TestBinaryOnServers(t *testing.T) {
	bin := buildChat(t)
	for _, b := range testdb.Backends[1:] {
		t.Run(b.Name, func(t *testing.T) {
			url := databaseURL(t, b)
			iss := usersynctest.NewIssuer(t)
			sender := clerktest.NewWebhookSender(t)
			chat := startChat(t, bin, append(os.Environ(), "DATABASE_URL="+url,
				"CLERK_ISSUER="+iss.URL, "CLERK_WEBHOOK_SECRET="+sender.Secret))
			defer chat.stop(t)
			base := chat.listening(t)

			tok := iss.Token(map[string]any{"sub": "user_srv", "name": "Server Sam"})
			// The deleted user's sessions end with them: another user reads
			// their message afterwards.
			reader := iss.Token(map[string]any{"sub": "user_reader", "name": "Reader Rita"})
			callAs := func(tok, method, path, body string) (int, string) {
				t.Helper()
				req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			call := func(method, path, body string) (int, string) { t.Helper(); return callAs(tok, method, path, body) }
			if code, body := call("POST", "/api/users/store", ""); code != 200 {
				t.Fatalf("store: %d %s", code, body)
			}
			if code, body := call("POST", "/api/messages", `{"body":"hello from `+b.Name+`"}`); code != 201 {
				t.Fatalf("send: %d %s", code, body)
			}
			if resp := sender.Send(base+"/clerk-users-webhook", clerktest.UserDeletedEvent("user_srv")); resp.StatusCode != 200 {
				t.Fatalf("webhook: %d", resp.StatusCode)
			}
			// The author shows as deleted at once; the change feed's consumer
			// erases the body soon after.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				code, body := callAs(reader, "GET", "/api/messages", "")
				var msgs []messageJSON
				if code != 200 || json.Unmarshal([]byte(body), &msgs) != nil || len(msgs) != 1 || msgs[0].Author != "deleted user" {
					t.Fatalf("messages after delete: %d %s", code, body)
				}
				if msgs[0].Body == erased {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the deleted user's message was not erased: %s", body)
				}
			}
		})
	}
}

// buildChat builds the example once per test binary, into a directory
// that TestMain removes after the tests.
func buildChat(t *testing.T) string {
	t.Helper()
	chatOnce.Do(func() {
		if chatDir, chatErr = os.MkdirTemp("", "chat-test-"); chatErr != nil {
			return
		}
		chatBin = filepath.Join(chatDir, "chat")
		if out, err := exec.Command("go", "build", "-o", chatBin, ".").CombinedOutput(); err != nil {
			chatErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if chatErr != nil {
		t.Fatal(chatErr)
	}
	return chatBin
}

var (
	chatOnce sync.Once
	chatDir  string // the built binary's directory; "" until buildChat
	chatBin  string
	chatErr  error
)

// TestMain removes the binary that buildChat built, if a test did.
func TestMain(m *testing.M) {
	code := m.Run()
	if chatDir != "" {
		if err := os.RemoveAll(chatDir); err != nil {
			fmt.Fprintln(os.Stderr, "removing the built chat:", err)
			code = cmp.Or(code, 1)
		}
	}
	os.Exit(code)
}

// databaseURL returns a DATABASE_URL for the chat in a schema (PostgreSQL)
// or database (MySQL) of the test's own, or an SQLite file of its own.
func databaseURL(t *testing.T, b *testdb.Backend) string {
	t.Helper()
	dsn := b.DSN(t)
	if b.Dialect == sqlstore.MySQL {
		return "mysql://" + dsn
	}
	return dsn
}

// TestBinaryRefusesAForeignUsersTable: an app's own users table of another
// shape makes the chat exit non-zero, naming the table and the fix, and
// stays untouched; with USERSYNC_TABLE the chat starts beside it.
func TestBinaryRefusesAForeignUsersTable(t *testing.T) {
	bin := buildChat(t)
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			url := databaseURL(t, b)
			db, _, err := dburl.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{"CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(200) NOT NULL)", "INSERT INTO users (id, email) VALUES (1, 'old@example.com')"} {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			iss := usersynctest.NewIssuer(t)
			env := append(os.Environ(), "DATABASE_URL="+url, "CLERK_ISSUER="+iss.URL, "CLERK_WEBHOOK_SECRET="+clerktest.NewWebhookSender(t).Secret)
			cmd := exec.Command(bin)
			cmd.Env = append(env, "USERSYNC_ADDR=127.0.0.1:0")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("chat did not fail: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "table users exists and was not made by usersync") || !strings.Contains(string(out), "USERSYNC_TABLE=clerk_users") {
				t.Fatalf("the message does not name the table and the fix:\n%s", out)
			}
			var email string
			if err := db.QueryRow("SELECT email FROM users WHERE id = 1").Scan(&email); err != nil || email != "old@example.com" {
				t.Fatalf("the app's table changed: %q, %v", email, err)
			}

			chat := startChat(t, bin, append(env, "USERSYNC_TABLE=clerk_users"))
			defer chat.stop(t)
			req, _ := http.NewRequest("POST", chat.listening(t)+"/api/messages", strings.NewReader(`{"body":"hi"}`))
			req.Header.Set("Authorization", "Bearer "+iss.Token(map[string]any{"sub": "user_new", "name": "New"}))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 201 {
				t.Fatalf("send beside the app's table: %d", resp.StatusCode)
			}
		})
	}
}

// chatProcess is a running chat binary that listens on a port of the
// kernel's choosing, its stdout and stderr collected.
type chatProcess struct {
	cmd     *exec.Cmd
	out     *outputLog
	exited  chan struct{} // closed when the process has exited
	waitErr error         // Wait's, once exited is closed
}

// startChat starts bin with env and USERSYNC_ADDR=127.0.0.1:0. The test's
// cleanup stops it if the test did not.
func startChat(t *testing.T, bin string, env []string) *chatProcess {
	t.Helper()
	p := &chatProcess{cmd: exec.Command(bin), out: newOutputLog(), exited: make(chan struct{})}
	p.cmd.Env = append(env, "USERSYNC_ADDR=127.0.0.1:0")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop interrupts the chat and waits for it to exit; after its graceful
// shutdown's 10 s and some, it kills it and fails the test.
func (p *chatProcess) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("the chat did not exit in 30s after an interrupt; its output:\n%s", p.out)
	}
}

// listening waits for the chat's "chat: listening" log line and returns
// the URL that it logs, the address it bound.
func (p *chatProcess) listening(t *testing.T) string {
	t.Helper()
	line := p.waitFor(t, "chat: listening")
	raw, ok := logValue(line, "url")
	u, err := url.Parse(raw)
	if !ok || err != nil || u.Scheme != "http" || u.Port() == "" || u.Port() == "0" {
		t.Fatalf("no URL with a port in the chat's log line %q; its output:\n%s", line, p.out)
	}
	return raw
}

// waitFor waits, for 30 s at most, for a line of the chat's output that
// contains want, and returns that line. It fails the test with the
// output if the chat exits first or the time runs out.
func (p *chatProcess) waitFor(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		changed := p.out.changed()
		if line, ok := p.out.line(want); ok {
			return line
		}
		select {
		case <-changed:
		case <-p.exited:
			if line, ok := p.out.line(want); ok {
				return line
			}
			t.Fatalf("the chat exited (%v) before logging %q; its output:\n%s", p.waitErr, want, p.out)
		case <-deadline:
			t.Fatalf("the chat did not log %q in 30s; its output:\n%s", want, p.out)
		}
	}
}

// logValue returns the value of key in a line of slog's text handler,
// unquoted.
func logValue(line, key string) (string, bool) {
	_, rest, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return "", false
	}
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", false
		}
		v, err := strconv.Unquote(q)
		return v, err == nil
	}
	v, _, _ := strings.Cut(rest, " ")
	return v, v != ""
}

// outputLog collects a process's output, and tells who waits on it when
// it grows.
type outputLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	grew chan struct{} // closed, and replaced, on each write
}

func newOutputLog() *outputLog { return &outputLog{grew: make(chan struct{})} }

func (o *outputLog) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(b)
	close(o.grew)
	o.grew = make(chan struct{})
	return len(b), nil
}

// changed returns a channel that is closed on the next write.
func (o *outputLog) changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.grew
}

// line returns the first whole line that contains want.
func (o *outputLog) line(want string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.buf.String()
	for {
		line, rest, ok := strings.Cut(s, "\n")
		if !ok {
			return "", false // a partial line: the rest of it is to come
		}
		if strings.Contains(line, want) {
			return line, true
		}
		s = rest
	}
}

func (o *outputLog) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// TestBinaryRefusesAnotherInstancesKey: the chat reconciles at start. On a
// database that holds an instance's users, a start with another
// instance's secret key deletes none of them and imports none of the
// other's: the chat says why and exits non-zero. A key whose instance
// passes the key check but lists none of the stored users (keys copied
// from the wrong dashboard, say) is refused as well, and the chat serves
// on.
func TestBinaryRefusesAnotherInstancesKey(t *testing.T) {
	bin := buildChat(t)
	url := filepath.Join(t.TempDir(), "chat.db")
	iss := usersynctest.NewIssuer(t)
	jwks := getBody(t, iss.JWKSURL())
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	instance := func(prefix string, n int, issuerKeys bool) *clerktest.API {
		api := clerktest.NewAPI(t)
		if issuerKeys {
			api.SetJWKS(jwks)
		}
		for i := range n {
			api.Put(clerktest.User{ID: fmt.Sprintf("user_%s_%03d", prefix, i), FirstName: clerktest.Str("U"), CreatedAt: at.Add(time.Duration(i) * time.Millisecond), UpdatedAt: at})
		}
		return api
	}
	real, other, lookalike := instance("real", 30, true), instance("other", 300, false), instance("lookalike", 300, true)
	env := func(api *clerktest.API) []string {
		return append(os.Environ(), "DATABASE_URL="+url, "USERSYNC_RECONCILE_EVERY=0",
			"CLERK_ISSUER="+iss.URL, "CLERK_WEBHOOK_SECRET="+clerktest.NewWebhookSender(t).Secret,
			"CLERK_SECRET_KEY="+api.SecretKey, "CLERK_API_URL="+api.URL)
	}
	// serveUntil runs the chat with api's key until it logs want.
	serveUntil := func(api *clerktest.API, want string) {
		t.Helper()
		chat := startChat(t, bin, env(api))
		defer chat.stop(t)
		chat.waitFor(t, want)
	}
	count := func() (live, foreign int) {
		t.Helper()
		db, _, err := dburl.Open(url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow("SELECT COUNT(*) FROM users WHERE deleted_at IS NULL").Scan(&live); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow("SELECT COUNT(*) FROM users WHERE subject NOT LIKE 'user_real_%'").Scan(&foreign); err != nil {
			t.Fatal(err)
		}
		return live, foreign
	}

	serveUntil(real, "reconcile: done")
	if live, foreign := count(); live != 30 || foreign != 0 {
		t.Fatalf("after the import: %d live, %d foreign; want 30 and 0", live, foreign)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(env(other), "USERSYNC_ADDR=127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("the chat did not exit non-zero with another instance's key: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CLERK_SECRET_KEY is not the secret key of CLERK_ISSUER's instance") || !strings.Contains(string(out), iss.URL) ||
		strings.Contains(string(out), other.SecretKey) {
		t.Fatalf("the log does not say why (or shows the key):\n%s", out)
	}
	if live, foreign := count(); live != 30 || foreign != 0 {
		t.Fatalf("after another instance's key: %d live, %d foreign; want 30 and 0", live, foreign)
	}

	serveUntil(lookalike, "is its secret key another instance's?")
	if live, foreign := count(); live != 30 || foreign != 0 {
		t.Fatalf("after a list of other users: %d live, %d foreign; want 30 and 0", live, foreign)
	}
}
