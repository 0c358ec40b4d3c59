package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// legacyApp is an app's own users table, from before usersync: integer
// keys, an email, and the column that links a row to usersync's user.
type legacyApp struct {
	b     *backend
	db    *sql.DB
	table string
	link  *sqlstore.Link
	next  atomic.Int64 // keys of the rows the hook inserts
}

func newLegacyApp(t *testing.T, b *backend, db *sql.DB, usersTable string) *legacyApp {
	a := &legacyApp{b: b, db: db, table: strings.TrimSuffix(usersTable, "users") + "app_users"}
	a.next.Store(1000)
	if _, err := db.Exec("CREATE TABLE " + a.table + " (id BIGINT PRIMARY KEY, email VARCHAR(255), clerk_id VARCHAR(128) NULL UNIQUE)"); err != nil {
		t.Fatal(err)
	}
	var err error
	a.link, err = sqlstore.NewLink(sqlstore.LinkConfig{Dialect: b.Dialect, Table: a.table, Key: "id", UserID: "clerk_id", Email: "email",
		ParseKey: func(s string) (any, bool) {
			n, err := strconv.ParseInt(s, 10, 64)
			return n, err == nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// q returns query with the dialect's placeholders for its "?"s.
func (a *legacyApp) q(query string) string {
	if a.b.Dialect != sqlstore.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hook links each change's user to the app's row, inserts a row for a new
// person, and records deletions on the row (anonymising it).
func (a *legacyApp) hook(ctx context.Context, tx *sql.Tx, c usersync.Change) error {
	key, err := a.link.Find(ctx, tx, c)
	switch {
	case err != nil:
		return err
	case key == nil && c.Outcome != usersync.Deleted:
		_, err = tx.ExecContext(ctx, a.q("INSERT INTO "+a.table+" (id, email, clerk_id) VALUES (?, ?, ?)"), a.next.Add(1), c.User.Email, c.UserID)
	case key != nil && c.Outcome == usersync.Deleted:
		_, err = tx.ExecContext(ctx, a.q("UPDATE "+a.table+" SET email = 'deleted' WHERE id = ?"), key)
	}
	return err
}

func (a *legacyApp) insert(t *testing.T, id int, email string) {
	if _, err := a.db.Exec(a.q("INSERT INTO "+a.table+" (id, email) VALUES (?, ?)"), id, email); err != nil {
		t.Fatal(err)
	}
}

// rows returns the app's rows, "id email linked-user".
func (a *legacyApp) rows(t *testing.T) map[string]string {
	rows, err := a.db.Query("SELECT id, email, clerk_id FROM " + a.table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id int64
		var email, uid sql.NullString
		if err := rows.Scan(&id, &email, &uid); err != nil {
			t.Fatal(err)
		}
		out[strconv.FormatInt(id, 10)] = email.String + " " + uid.String
	}
	return out
}

func linkWrite(sub, ext, email string, verified bool, at int) usersync.Write {
	iss := "https://issuer.test"
	return usersync.Write{
		Issuer: iss, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(iss, sub), ID: "u-" + sub, Version: 1,
		Fields:  usersync.FieldExternalID | usersync.FieldEmail | usersync.FieldEmailVerified,
		Profile: usersync.Profile{ExternalID: ext, Email: email, EmailVerified: verified},
		At:      time.Date(2026, 12, 6, 12, 0, at, 0, time.UTC),
	}
}

func TestLinkFindsTheAppsRow(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			app := newLegacyApp(t, b, db, table)
			s := b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: app.hook})
			app.insert(t, 42, "ann@example.com")
			app.insert(t, 43, "Bob@Example.com")
			app.insert(t, 44, "cat@example.com")
			app.insert(t, 45, "dee@example.com")
			app.insert(t, 46, "eve@example.com")

			for _, w := range []usersync.Write{
				linkWrite("ann", "42", "other@example.com", true, 1),         // by external ID, whatever the email
				linkWrite("bob", "", "bob@example.COM", true, 2),             // by verified email, any case
				linkWrite("dee", "", "dee@example.com", false, 3),            // unverified: a new row
				linkWrite("fay", "not-a-number", "eve@example.com", true, 4), // an external ID that cannot be a key: by email
				linkWrite("gil", "42", "gil@example.com", true, 5),           // row 42 is ann's: a new row
			} {
				if _, _, err := s.Upsert(ctx, w); err != nil {
					t.Fatalf("%s: %v", w.Subject, err)
				}
			}
			// Linked already: found by the user's ID, not linked again.
			if _, _, err := s.Upsert(ctx, linkWrite("bob", "", "robert@example.com", true, 6)); err != nil {
				t.Fatal(err)
			}
			// Deleted before any link: the tombstone's external ID finds
			// the row.
			if _, err := db.Exec(app.q("UPDATE "+app.table+" SET clerk_id = NULL WHERE id = ?"), 44); err != nil {
				t.Fatal(err)
			}
			cat := linkWrite("cat", "44", "", false, 7)
			cat.Fields = usersync.FieldExternalID
			plain, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table}) // no hook: a write before the app linked
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := plain.Upsert(ctx, cat); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Delete(ctx, usersync.Write{Issuer: cat.Issuer, Subject: "cat", TokenIdentifier: cat.TokenIdentifier, ID: "x", At: cat.At.Add(time.Second)}); err != nil {
				t.Fatal(err)
			}

			got := app.rows(t)
			want := map[string]string{
				"42": "ann@example.com u-ann", "43": "Bob@Example.com u-bob", "44": "deleted u-cat",
				"45": "dee@example.com ", "46": "eve@example.com u-fay",
				"1001": "dee@example.com u-dee", "1002": "gil@example.com u-gil",
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("app rows:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestLinkIsSafeAcrossReplicas(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			app := newLegacyApp(t, b, db, table)
			app.insert(t, 1, "shared@example.com")
			// Two replicas: two stores, on two pools where the database
			// has them.
			replicas := []*sqlstore.Store{b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: app.hook})}
			other := db
			if b.Env != "" {
				other = b.OpenExtra(t, db)
			}
			replicas = append(replicas, b.StoreWith(t, other, sqlstore.Config{Table: table, OnWrite: app.hook}))

			app.writeEveryoneEverywhere(t, replicas, 8)
		})
	}
}

// writeEveryoneEverywhere writes each of people on every one of stores at
// once, all of them with the verified email of the app's legacy row 1, and
// checks that each person ends with exactly one row of the app's, the
// legacy row taken by one of them. It returns the app's rows by the user
// ID they are linked to.
func (a *legacyApp) writeEveryoneEverywhere(t *testing.T, stores []*sqlstore.Store, people int) map[string]int {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, people*len(stores))
	for p := range people {
		for r, s := range stores {
			wg.Go(func() {
				w := linkWrite(fmt.Sprintf("p%d", p), "", "shared@example.com", true, p)
				w.ID = fmt.Sprintf("u-p%d-r%d", p, r)
				if _, _, err := s.Upsert(ctx, w); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	linked := map[string]int{}
	rows := a.rows(t)
	for _, row := range rows {
		_, uid, _ := strings.Cut(row, " ")
		linked[uid]++
	}
	if len(linked) != people {
		t.Fatalf("%d people linked, want %d: %v", len(linked), people, rows)
	}
	for uid, n := range linked {
		if n != 1 || uid == "" {
			t.Fatalf("user %q has %d rows: %v", uid, n, rows)
		}
	}
	return linked
}

func TestLinkPassesOverARowTakenMeanwhile(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			if b.Env == "" {
				t.Skip("SQLite has one writer: no other transaction can take a row meanwhile")
			}
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			app := newLegacyApp(t, b, db, table)
			app.insert(t, 50, "same@example.com")
			app.insert(t, 51, "same@example.com")
			other := b.OpenExtra(t, db)
			s := b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: func(ctx context.Context, tx *sql.Tx, c usersync.Change) error {
				// Another replica links row 50 after this transaction
				// began (and, on MySQL, read its snapshot).
				if _, err := other.ExecContext(ctx, app.q("UPDATE "+app.table+" SET clerk_id = ? WHERE id = ?"), "u-someone", 50); err != nil {
					return err
				}
				return app.hook(ctx, tx, c)
			}})
			if _, _, err := s.Upsert(ctx, linkWrite("kim", "", "same@example.com", true, 1)); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"50": "same@example.com u-someone", "51": "same@example.com u-kim"}
			if got := app.rows(t); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("app rows: %v, want %v (the next unlinked row of the email)", got, want)
			}
		})
	}
}

func TestNewLinkRejectsBadNames(t *testing.T) {
	for _, cfg := range []sqlstore.LinkConfig{
		{Table: "users", Key: "id"},
		{Table: "users; DROP", Key: "id", UserID: "clerk_id"},
		{Table: "users", Key: "id x", UserID: "clerk_id"},
		{Table: "users", Key: "id", UserID: "clerk_id", Email: "e-mail"},
		{Dialect: 9, Table: "users", Key: "id", UserID: "clerk_id"},
	} {
		if _, err := sqlstore.NewLink(cfg); !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("%+v: err = %v, want ErrInvalid", cfg, err)
		}
	}
}
