package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
	"github.com/usersync/usersync/usersynctest"
)

// TestConformanceWithAHook runs the store's rules with an OnWrite hook,
// which puts every Upsert and Delete in a transaction of its own.
func TestConformanceWithAHook(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			usersynctest.TestStore(t, func(t *testing.T) usersync.Store {
				db, table := b.Open(t)
				return b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: func(context.Context, *sql.Tx, usersync.Change) error { return nil }})
			})
		})
	}
}

// serializationFailure is the error a driver returns when the database
// asks for a transaction to be run again (SQLSTATE 40001).
type serializationFailure struct{}

func (serializationFailure) Error() string    { return "serialization failure" }
func (serializationFailure) SQLState() string { return "40001" }

// appLog is an app's table that a hook writes in the write's transaction:
// one row per call that committed.
type appLog struct {
	db    *sql.DB
	table string
	n     atomic.Int64 // orders the rows
}

func newAppLog(t *testing.T, db *sql.DB, usersTable string) *appLog {
	l := &appLog{db: db, table: strings.TrimSuffix(usersTable, "users") + "app_log"}
	if _, err := db.Exec("CREATE TABLE " + l.table + " (n BIGINT PRIMARY KEY, user_id VARCHAR(128) NOT NULL, outcome VARCHAR(16) NOT NULL, external_id VARCHAR(255) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return l
}

// insert records c in tx, with the placeholders of d.
func (l *appLog) insert(ctx context.Context, tx *sql.Tx, d sqlstore.Dialect, c usersync.Change) error {
	q := "INSERT INTO " + l.table + " (n, user_id, outcome, external_id) VALUES (?, ?, ?, ?)"
	if d == sqlstore.Postgres {
		q = "INSERT INTO " + l.table + " (n, user_id, outcome, external_id) VALUES ($1, $2, $3, $4)"
	}
	_, err := tx.ExecContext(ctx, q, l.n.Add(1), c.UserID, c.Outcome.String(), c.ExternalID)
	return err
}

// rows returns the committed rows, "outcome user external", in order.
func (l *appLog) rows(t *testing.T, names map[string]string) []string {
	t.Helper()
	rows, err := l.db.Query("SELECT user_id, outcome, external_id FROM " + l.table + " ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, outcome, ext string
		if err := rows.Scan(&id, &outcome, &ext); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %s", outcome, cmpOr(names[id], id), ext))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// hookWrite is a write of subject at version v with its external ID, made
// at a time of its own (a MySQL store tells the write that created a row
// by its ID and time).
func hookWrite(sub string, v usersync.Version) usersync.Write {
	iss := "https://issuer.test"
	return usersync.Write{
		Issuer: iss, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(iss, sub), ID: "id-" + sub,
		Version: v, Fields: usersync.FieldName | usersync.FieldExternalID,
		Profile: usersync.Profile{Name: fmt.Sprintf("%s v%d", sub, v), ExternalID: "ext-" + sub},
		At:      time.Date(2026, 12, 6, 12, 0, int(v), 0, time.UTC), // as the Syncer's clock would

	}
}

func TestOnWriteRunsInTheTransactionOfEveryChange(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			log := newAppLog(t, db, table)
			var seen []usersync.Change
			s := b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: func(ctx context.Context, tx *sql.Tx, c usersync.Change) error {
				seen = append(seen, c)
				return log.insert(ctx, tx, b.Dialect, c)
			}})
			names := map[string]string{"id-alice": "alice", "id-bob": "bob", "id-carol": "carol"}

			created, _, err := s.Upsert(ctx, hookWrite("alice", 1))
			if err != nil {
				t.Fatal(err)
			}
			if _, o, err := s.Upsert(ctx, hookWrite("alice", 1)); err != nil || o != usersync.Stale {
				t.Fatalf("a duplicate: %v, %v; want Stale", o, err)
			}
			if _, o, err := s.Upsert(ctx, hookWrite("alice", 2)); err != nil || o != usersync.Updated {
				t.Fatalf("a newer write: %v, %v; want Updated", o, err)
			}
			batch := []usersync.Write{hookWrite("bob", 1), hookWrite("carol", 1), hookWrite("alice", 3), hookWrite("bob", 1), hookWrite("bob", 2)}
			if _, outcomes, err := s.UpsertBatch(ctx, batch); err != nil || fmt.Sprint(outcomes) != "[created created updated stale updated]" {
				t.Fatalf("UpsertBatch = %v, %v", outcomes, err)
			}
			del := usersync.Write{Issuer: created.Issuer, Subject: "alice", TokenIdentifier: created.TokenIdentifier, ID: "unused", At: time.Now()}
			if _, o, err := s.Delete(ctx, del); err != nil || o != usersync.Deleted {
				t.Fatalf("Delete = %v, %v", o, err)
			}
			if _, o, err := s.Delete(ctx, del); err != nil || o != usersync.Stale {
				t.Fatalf("Delete again = %v, %v; want Stale", o, err)
			}
			// A delete of a key never seen leaves a tombstone: Deleted, to
			// the hook as to the caller.
			ghost := hookWrite("ghost", 1)
			if _, o, err := s.Delete(ctx, usersync.Write{Issuer: ghost.Issuer, Subject: "ghost", TokenIdentifier: ghost.TokenIdentifier, ID: "id-ghost", At: time.Now()}); err != nil || o != usersync.Deleted {
				t.Fatalf("Delete of a key never seen = %v, %v", o, err)
			}
			names["id-ghost"] = "ghost"

			want := []string{
				"created alice ext-alice", "updated alice ext-alice",
				"created bob ext-bob", "created carol ext-carol", "updated alice ext-alice", "updated bob ext-bob",
				"deleted alice ext-alice", // the tombstone keeps the app's key
				"deleted ghost ",
			}
			if got := log.rows(t, names); !slices.Equal(got, want) {
				t.Fatalf("the hook's rows:\n got %q\nwant %q", got, want)
			}
			// The change carries the user as written.
			last := seen[len(seen)-2]
			if last.User.ID != created.ID || last.User.DeletedAt.IsZero() || last.User.Name != "" || last.User.ExternalID != "ext-alice" {
				t.Fatalf("the delete's change carries %+v, want alice's tombstone", last.User)
			}
			if up := seen[1]; up.User.Name != "alice v2" || up.Outcome != usersync.Updated {
				t.Fatalf("the update's change carries %+v", up)
			}
		})
	}
}

func TestOnWriteFailureRollsTheWriteBack(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("the app refused")
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			log := newAppLog(t, db, table)
			var fail atomic.Value // the subject whose writes the hook fails
			fail.Store("")
			s := b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: func(ctx context.Context, tx *sql.Tx, c usersync.Change) error {
				if err := log.insert(ctx, tx, b.Dialect, c); err != nil {
					return err
				}
				if c.User.Subject == fail.Load().(string) {
					return errBoom
				}
				return nil
			}})
			if _, _, err := s.Upsert(ctx, hookWrite("erin", 1)); err != nil {
				t.Fatal(err)
			}
			before, err := s.Changes(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}

			fail.Store("dave")
			if _, _, err := s.Upsert(ctx, hookWrite("dave", 1)); !errors.Is(err, errBoom) || errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("Upsert with a failing hook: err = %v, want the hook's", err)
			}
			if _, err := s.GetByTokenIdentifier(ctx, hookWrite("dave", 1).TokenIdentifier); !errors.Is(err, usersync.ErrNotFound) {
				t.Fatalf("the failed create was stored: %v", err)
			}
			if _, _, err := s.UpsertBatch(ctx, []usersync.Write{hookWrite("frank", 1), hookWrite("dave", 1)}); !errors.Is(err, errBoom) {
				t.Fatalf("UpsertBatch with a failing hook: err = %v, want the hook's", err)
			}
			if _, err := s.GetByTokenIdentifier(ctx, hookWrite("frank", 1).TokenIdentifier); !errors.Is(err, usersync.ErrNotFound) {
				t.Fatalf("a batch whose hook failed stored a write: %v", err)
			}

			fail.Store("erin")
			erin := hookWrite("erin", 1)
			if _, _, err := s.Delete(ctx, usersync.Write{Issuer: erin.Issuer, Subject: "erin", TokenIdentifier: erin.TokenIdentifier, ID: "x", At: time.Now()}); !errors.Is(err, errBoom) {
				t.Fatalf("Delete with a failing hook: err = %v, want the hook's", err)
			}
			if u, err := s.GetByTokenIdentifier(ctx, erin.TokenIdentifier); err != nil || u.Name != "erin v1" {
				t.Fatalf("the failed delete changed erin: %+v, %v", u, err)
			}
			if _, _, err := s.Upsert(ctx, hookWrite("erin", 2)); !errors.Is(err, errBoom) {
				t.Fatalf("an update with a failing hook: err = %v", err)
			}
			if u, _ := s.GetByTokenIdentifier(ctx, erin.TokenIdentifier); u.Name != "erin v1" {
				t.Fatalf("the failed update changed erin: %+v", u)
			}

			if got := log.rows(t, nil); !slices.Equal(got, []string{"created id-erin ext-erin"}) {
				t.Fatalf("the app's rows: %q; the failed writes' rows must roll back with them", got)
			}
			if after, err := s.Changes(ctx, 0, 100); err != nil || len(after) != len(before) {
				t.Fatalf("the feed has %d changes after the failures, %d before (%v)", len(after), len(before), err)
			}
		})
	}
}

func TestOnWriteAppsUniqueViolationIsTheAppsError(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			log := newAppLog(t, db, table)
			s := b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: func(ctx context.Context, tx *sql.Tx, c usersync.Change) error {
				log.n.Store(0) // every call takes n = 1: the second clashes
				return log.insert(ctx, tx, b.Dialect, c)
			}})
			if _, _, err := s.Upsert(ctx, hookWrite("gina", 1)); err != nil {
				t.Fatal(err)
			}
			_, _, err := s.Upsert(ctx, hookWrite("hank", 1))
			if err == nil || errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), "OnWrite") {
				t.Fatalf("a unique violation in the app's table: err = %v; want the hook's error, not the store's ErrInvalid", err)
			}
		})
	}
}

func TestOnWriteRunsAgainWhenTheDatabaseAsks(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			log := newAppLog(t, db, table)
			var calls atomic.Int64
			s := b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: func(ctx context.Context, tx *sql.Tx, c usersync.Change) error {
				if err := log.insert(ctx, tx, b.Dialect, c); err != nil {
					return err
				}
				if calls.Add(1) == 1 {
					return serializationFailure{} // what the database says of its own statements
				}
				return nil
			}})
			u, o, err := s.Upsert(ctx, hookWrite("ivy", 1))
			if err != nil || o != usersync.Created {
				t.Fatalf("Upsert = %v, %v; want Created on the second attempt", o, err)
			}
			if calls.Load() != 2 {
				t.Fatalf("the hook ran %d times, want 2", calls.Load())
			}
			if got := log.rows(t, map[string]string{u.ID: "ivy"}); !slices.Equal(got, []string{"created ivy ext-ivy"}) {
				t.Fatalf("the app's rows: %q; want the second attempt's only", got)
			}
			calls.Store(0)
			if _, outcomes, err := s.UpsertBatch(ctx, []usersync.Write{hookWrite("jack", 1), hookWrite("ivy", 2)}); err != nil || fmt.Sprint(outcomes) != "[created updated]" {
				t.Fatalf("UpsertBatch = %v, %v", outcomes, err)
			}
			if calls.Load() != 3 {
				t.Fatalf("the batch's hook ran %d times, want 3 (one failed attempt, then both writes)", calls.Load())
			}
		})
	}
}
