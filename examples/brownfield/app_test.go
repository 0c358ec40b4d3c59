package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/clerk/clerktest"
)

// TestUsersyncLines holds the example to its promise: only sync.go
// touches usersync, in at most 80 lines of code.
func TestUsersyncLines(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "sync.go" {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			if strings.Contains(imp.Path.Value, "github.com/usersync/usersync") {
				t.Errorf("%s imports %s: usersync belongs in sync.go", f, imp.Path.Value)
			}
		}
	}
	code := 0
	src, err := os.ReadFile("sync.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "//") {
			code++
		}
	}
	t.Logf("sync.go: %d lines of code", code)
	if code > 80 {
		t.Errorf("sync.go has %d lines of code, the example promises at most 80", code)
	}
}

// brownfield is the app running against a fake Clerk, on a database that
// had users and orders before.
type brownfield struct {
	t     *testing.T
	fake  *clerkfake.Instance
	url   string
	db    *sql.DB
	pg    bool
	hooks *clerkfake.WebhookSender
}

func TestBrownfield(t *testing.T) {
	for _, dbName := range []string{"sqlite", "postgres"} {
		t.Run(dbName, func(t *testing.T) {
			dsn := "file:" + filepath.Join(t.TempDir(), "app.db") + "?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"
			if dbName == "postgres" {
				dsn = postgresSchema(t)
			}
			testBrownfield(t, dsn, dbName == "postgres")
		})
	}
}

// postgresSchema returns a DSN of a schema of the test's own, dropped
// when it ends.
func postgresSchema(t *testing.T) string {
	base := os.Getenv("USERSYNC_POSTGRES_DSN")
	if base == "" {
		t.Skip("USERSYNC_POSTGRES_DSN is unset: set it to run the example on PostgreSQL")
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	schema := "brownfield_" + strings.ToLower(rand.Text()[:16]) // a name of the test's own: it drops only that
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP SCHEMA " + schema + " CASCADE") })
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

func testBrownfield(t *testing.T, dsn string, pg bool) {
	ctx, cancel := context.WithCancel(context.Background())
	var fakeHandler http.Handler
	clerkSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fakeHandler.ServeHTTP(w, r) }))
	t.Cleanup(clerkSrv.Close)
	fake, err := clerkfake.New(clerkfake.Config{Issuer: clerkSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	fakeHandler = fake
	hooks, err := clerkfake.NewWebhookSender(fake.WebhookSecret())
	if err != nil {
		t.Fatal(err)
	}

	// The app's data before usersync: four people and their orders.
	driver := "sqlite"
	if pg {
		driver = "pgx"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := createSchema(ctx, db, pg); err != nil {
		t.Fatal(err)
	}
	for i, email := range []string{"ann@example.com", "bob@example.com", "cat@example.com", "dan@example.com"} {
		// Keys from the table's own sequence: 1 to 4.
		if _, err := db.Exec(sqlFor(pg, "INSERT INTO users (email, name) VALUES (?, ?)"), email, strings.Split(email, "@")[0]); err != nil {
			t.Fatal(err)
		}
		for k := range 2 {
			if _, err := db.Exec(sqlFor(pg, "INSERT INTO orders (id, user_id, item, ship_to) VALUES (?, ?, ?, ?)"), 10*(i+1)+k, i+1, "item", "1 Main St"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Clerk's users: ann and cat imported with their old IDs, bob signed
	// up again with his email, eve is new.
	at := time.Now().Add(-time.Hour)
	fake.Put(
		clerktest.User{ID: "user_ann", Email: "ann@example.com", ExternalID: "1", FirstName: clerkfake.Str("Ann"), UpdatedAt: at},
		clerktest.User{ID: "user_bob", Email: "BOB@example.com", UpdatedAt: at},
		clerktest.User{ID: "user_cat", Email: "cat@example.com", ExternalID: "3", UpdatedAt: at},
		clerktest.User{ID: "user_eve", Email: "eve@example.com", FirstName: clerkfake.Str("Eve"), UpdatedAt: at},
	)

	env := map[string]string{
		"DATABASE_URL": dsn, "ADDR": "127.0.0.1:0", "CLERK_ISSUER": fake.Issuer(), "CLERK_API_URL": fake.APIURL(),
		"CLERK_SECRET_KEY": fake.SecretKey(), "CLERK_WEBHOOK_SECRET": fake.WebhookSecret(),
	}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testLog{t}, nil))
	go func() { done <- run(ctx, func(k string) string { return env[k] }, log, func(a string) { addr <- a }) }()
	b := &brownfield{t: t, fake: fake, db: db, pg: pg, hooks: hooks}
	select {
	case a := <-addr:
		b.url = "http://" + a
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	// The backfill at start links ann and cat by external ID, bob by his
	// verified email, and gives eve a row.
	b.waitFor("the backfill", func() bool {
		return b.linked() == "1 user_ann, 2 user_bob, 3 user_cat, 5 user_eve"
	})
	if got := b.orders("user_ann"); got != "10 1 Main St, 11 1 Main St" {
		t.Fatalf("ann's orders: %s", got)
	}

	// Cat is deleted: her orders are anonymised by the time Clerk gets its
	// 200, in the delete's own transaction.
	if status := b.send(`{"type":"user.deleted","object":"event","data":{"id":"user_cat","object":"user","deleted":true}}`); status != http.StatusOK {
		t.Fatalf("user.deleted answered %d", status)
	}
	var shipTo sql.NullString
	if err := db.QueryRow(sqlFor(pg, "SELECT ship_to FROM orders WHERE id = ?"), 30).Scan(&shipTo); err != nil || shipTo.Valid {
		t.Fatalf("cat's order after the delete: %v, %v; want anonymised", shipTo, err)
	}

	// Dan signs in before any webhook: his token carries no email, so
	// usersync completes him from the Backend API, and the completion
	// links him by the external ID he was imported with.
	fake.Put(clerktest.User{ID: "user_dan", Email: "dan@example.com", ExternalID: "4", UpdatedAt: time.Now().Add(-time.Minute)})
	b.waitFor("dan's first request", func() bool { return b.orders("user_dan") == "40 1 Main St, 41 1 Main St" })
	if got := b.linked(); got != "1 user_ann, 2 user_bob, 3 user_cat, 4 user_dan, 5 user_eve" {
		t.Fatalf("links after dan's sign-in: %s (no duplicate row for dan)", got)
	}

	// usersync's metrics are the app's.
	res, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, name := range []string{"usersync_store_operation_duration_seconds", "usersync_webhook"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// waitFor polls cond until it holds, failing after a minute.
func (b *brownfield) waitFor(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not done after a minute (links: %s)", what, b.linked())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// linked lists the app's rows linked to a Clerk user: "id clerk user ID",
// by id.
func (b *brownfield) linked() string {
	rows, err := b.db.Query("SELECT u.id, c.subject FROM users u JOIN clerk_users c ON c.id = u.clerk_id ORDER BY u.id")
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var sub string
		rows.Scan(&id, &sub)
		out = append(out, fmt.Sprintf("%d %s", id, sub))
	}
	return strings.Join(out, ", ")
}

// orders returns the orders the app shows to the user with a session token
// of sub, or the status it answered.
func (b *brownfield) orders(sub string) string {
	token, err := b.fake.Token(sub, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", b.url+"/me/orders", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return res.Status
	}
	var list []order
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, o := range list {
		ship := "anonymised"
		if o.ShipTo != nil {
			ship = *o.ShipTo
		}
		out = append(out, fmt.Sprintf("%d %s", o.ID, ship))
	}
	return strings.Join(out, ", ")
}

// send delivers a signed webhook and returns the status it got.
func (b *brownfield) send(body string) int {
	res, err := b.hooks.Send(context.Background(), b.url+"/webhooks/clerk", []byte(body))
	if err != nil {
		b.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// testLog writes the app's log to the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
