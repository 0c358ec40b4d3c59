package sqlstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// TestSequencingKeepsEachUsersOrderAcrossBatches: on a Galera cluster
// each node hands out its own ids, so a user's later change can have the
// lower id. A sequencing batch that ends between the two must not number
// the later change first: here user "a" wrote user_seq 1 (id 1001) before
// user_seq 2 (id 1000), and the first batch ends at id 1000.
func TestSequencingKeepsEachUsersOrderAcrossBatches(t *testing.T) {
	for _, b := range backends {
		if b.Dialect == sqlstore.SQLite {
			continue // SQLite numbers changes as they commit: no sequencer
		}
		t.Run(b.Name, func(t *testing.T) {
			db, table := b.Open(t)
			s := b.StoreOn(t, db, table)
			ctx := context.Background()
			var q strings.Builder
			var args []any
			ph := func() string {
				if b.Dialect == sqlstore.Postgres {
					return fmt.Sprintf("$%d", len(args))
				}
				return "?"
			}
			fmt.Fprintf(&q, "INSERT INTO %s_changes (id, user_id, user_seq, outcome, at) VALUES ", table)
			row := func(id int64, user string, userSeq int64) {
				if len(args) > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(")
				for i, v := range []any{id, user, userSeq, 2, time.Now()} {
					args = append(args, v)
					if i > 0 {
						q.WriteString(", ")
					}
					q.WriteString(ph())
				}
				q.WriteString(")")
			}
			for id := int64(1); id < 1000; id++ {
				row(id, fmt.Sprintf("x%d", id), 1)
			}
			row(1000, "a", 2)
			row(1001, "a", 1)
			if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
				t.Fatal(err)
			}
			all, err := s.Changes(ctx, 0, 2000)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 1001 {
				t.Fatalf("%d changes in the feed, want 1001", len(all))
			}
			var userSeqs []int64
			for _, c := range all {
				if c.UserID == "a" {
					var n int64
					if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT user_seq FROM %s_changes WHERE seq = %d", table, c.Seq)).Scan(&n); err != nil {
						t.Fatal(err)
					}
					userSeqs = append(userSeqs, n)
				}
			}
			if fmt.Sprint(userSeqs) != "[1 2]" {
				t.Fatalf("user a's changes in the feed in the order of user_seq %v, want [1 2]", userSeqs)
			}
		})
	}
}

// TestALateCommitIsNotSkipped: on PostgreSQL and MySQL, transactions
// commit out of the order in which they wrote. Transaction A writes a
// user and stays open; B writes another user and commits; a reader moves
// past B's change; then A commits. A reader that followed insertion order
// would have passed A's place already and skip it forever: the feed
// numbers a change only once committed, so A comes after B.
func TestALateCommitIsNotSkipped(t *testing.T) {
	write := func(sub string) usersync.Write {
		const iss = "https://issuer.test"
		return usersync.Write{ID: "id-" + sub, TokenIdentifier: usersync.TokenIdentifier(iss, sub), Issuer: iss, Subject: sub,
			Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: sub}, At: time.Now()}
	}
	for _, b := range backends {
		if b.Dialect == sqlstore.SQLite {
			continue // one writer at a time: commits are in order
		}
		t.Run(b.Name, func(t *testing.T) {
			db, table := b.Open(t)
			s := b.StoreOn(t, db, table)
			ctx := context.Background()
			if _, _, err := s.Upsert(ctx, write("a")); err != nil {
				t.Fatal(err)
			}
			first, err := s.Changes(ctx, 0, 10)
			if err != nil || len(first) != 1 {
				t.Fatal(first, err)
			}
			cursor := first[0].Seq
			// A: a write to user a (as a write raises change_count), open.
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			ph := "?"
			if b.Dialect == sqlstore.Postgres {
				ph = "$1"
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET change_count = change_count + 1 WHERE id = %s", table, ph), "id-a"); err != nil {
				t.Fatal(err)
			}
			// B commits, and the reader moves past it.
			if _, _, err := s.Upsert(ctx, write("b")); err != nil {
				t.Fatal(err)
			}
			page, err := s.Changes(ctx, cursor, 10)
			if err != nil || len(page) != 1 || page[0].UserID != "id-b" {
				t.Fatalf("the reader got %+v, %v; want B's change alone", page, err)
			}
			cursor = page[0].Seq
			// A commits late: the reader still gets it.
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			page, err = s.Changes(ctx, cursor, 10)
			if err != nil || len(page) != 1 || page[0].UserID != "id-a" {
				t.Fatalf("after the late commit the reader got %+v, %v; want A's change", page, err)
			}
		})
	}
}

// TestAWriteOfAnOlderReleaseIsInTheFeed: during a rolling deploy, replicas
// of a release before the change feed still write, with statements that
// know nothing of change_count. Their updates and deletions reach the feed
// all the same, in order, and the new release's writes are counted once.
func TestAWriteOfAnOlderReleaseIsInTheFeed(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			db, table := b.Open(t)
			s := b.StoreOn(t, db, table)
			ctx := context.Background()
			const iss = "https://issuer.test"
			w := usersync.Write{ID: "id-a", TokenIdentifier: usersync.TokenIdentifier(iss, "a"), Issuer: iss, Subject: "a",
				Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Ada"}, At: time.Now()}
			if _, _, err := s.Upsert(ctx, w); err != nil {
				t.Fatal(err)
			}
			// The old release's statements: times as it wrote them.
			at := func(d time.Duration) any {
				t := time.Now().Add(d).UTC().Truncate(time.Millisecond)
				if b.Dialect == sqlstore.SQLite {
					return t.UnixMilli()
				}
				return t
			}
			ph := func(n int) string {
				if b.Dialect == sqlstore.Postgres {
					return fmt.Sprintf("$%d", n)
				}
				return "?"
			}
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{fmt.Sprintf("UPDATE %s SET name = %s, name_version = 2, version = 2, updated_at = %s WHERE id = %s", table, ph(1), ph(2), ph(3)), []any{"Ada L.", at(time.Second), "id-a"}},
				{fmt.Sprintf("UPDATE %s SET deleted_at = %s, updated_at = %s WHERE id = %s", table, ph(1), ph(2), ph(3)), []any{at(2 * time.Second), at(2 * time.Second), "id-a"}},
			} {
				if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
					t.Fatal(err)
				}
			}
			// The new release's write of another user: one change.
			w2 := w
			w2.ID, w2.Subject, w2.TokenIdentifier = "id-b", "b", usersync.TokenIdentifier(iss, "b")
			if _, _, err := s.Upsert(ctx, w2); err != nil {
				t.Fatal(err)
			}
			if _, o, err := s.Upsert(ctx, w2); err != nil || o != usersync.Stale {
				t.Fatalf("a repeated write: %v, %v", o, err)
			}
			changes, err := s.Changes(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				got = append(got, c.UserID+" "+c.Outcome.String())
			}
			if want := []string{"id-a created", "id-a updated", "id-a deleted", "id-b created"}; !slices.Equal(got, want) {
				t.Fatalf("the feed holds %q, want %q", got, want)
			}
		})
	}
}
