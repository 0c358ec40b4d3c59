package sqlstore_test

import (
	"context"
	"fmt"
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
