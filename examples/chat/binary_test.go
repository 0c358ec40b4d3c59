package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/usersynctest"
)

// TestBinaryOnServers builds the example and runs it against PostgreSQL
// and MariaDB, as a user would with DATABASE_URL.
func TestBinaryOnServers(t *testing.T) {
	servers := []struct{ name, env, driver, prefix string }{
		{"postgres", "USERSYNC_POSTGRES_DSN", "pgx", ""},
		{"mysql", "USERSYNC_MYSQL_DSN", "mysql", "mysql://"},
	}
	var bin string
	dir := t.TempDir()
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			dsn := os.Getenv(s.env)
			if dsn == "" {
				t.Skipf("%s is not set: skipping the example against %s", s.env, s.name)
			}
			if bin == "" {
				bin = filepath.Join(dir, "chat")
				if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
					t.Fatalf("go build: %v\n%s", err, out)
				}
			}
			// The example owns the tables users, users_migrations and
			// messages: start from none.
			db, err := sql.Open(s.driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, tb := range []string{"messages", "users", "users_migrations"} {
				if _, err := db.Exec("DROP TABLE IF EXISTS " + tb); err != nil {
					t.Fatal(err)
				}
			}

			iss := usersynctest.NewIssuer(t)
			sender := clerktest.NewWebhookSender(t)
			addr := freeAddr(t)
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(), "USERSYNC_ADDR="+addr, "DATABASE_URL="+s.prefix+dsn,
				"CLERK_ISSUER="+iss.URL, "CLERK_WEBHOOK_SECRET="+sender.Secret)
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Signal(os.Interrupt)
				cmd.Wait()
			}()
			waitFor(t, stderr, "chat: listening")
			base := "http://" + addr

			tok := iss.Token(map[string]any{"sub": "user_srv", "name": "Server Sam"})
			call := func(method, path, body string) (int, string) {
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
			if code, body := call("POST", "/api/users/store", ""); code != 200 {
				t.Fatalf("store: %d %s", code, body)
			}
			if code, body := call("POST", "/api/messages", `{"body":"hello from `+s.name+`"}`); code != 201 {
				t.Fatalf("send: %d %s", code, body)
			}
			if resp := sender.Send(base+"/clerk-users-webhook", clerktest.UserDeletedEvent("user_srv")); resp.StatusCode != 200 {
				t.Fatalf("webhook: %d", resp.StatusCode)
			}
			code, body := call("GET", "/api/messages", "")
			var msgs []messageJSON
			if code != 200 || json.Unmarshal([]byte(body), &msgs) != nil || len(msgs) != 1 || msgs[0].Author != "deleted user" {
				t.Fatalf("messages after delete: %d %s", code, body)
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor reads the process's log until a line contains want.
func waitFor(t *testing.T, r io.Reader, want string) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), want) {
				ok = true
				found <- true
			}
		}
		if !ok {
			found <- false
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("the example exited before logging %q", want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the example did not log %q in 30s", want)
	}
}
