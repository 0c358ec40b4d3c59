package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
)

// refuseMarker makes the database refuse, as a value it cannot hold, any
// metadata or name that holds the text "refuse-me": a value Write.Validate takes,
// as a number beyond a database's range once was. PostgreSQL raises
// SQLSTATE 22003 from a trigger; MariaDB's CHECK fails (4025). Only the
// test's own table is changed.
func refuseMarker(t *testing.T, db *sql.DB, b *testdb.Backend, table string) {
	t.Helper()
	var stmts []string
	switch b.Dialect {
	case sqlstore.Postgres:
		schema, _, _ := strings.Cut(table, ".")
		stmts = []string{
			fmt.Sprintf(`CREATE FUNCTION %s.refuse_marker() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.metadata::text LIKE '%%refuse-me%%' OR NEW.name LIKE '%%refuse-me%%' THEN
		RAISE EXCEPTION 'numeric field overflow' USING ERRCODE = '22003';
	END IF;
	RETURN NEW;
END $$`, schema),
			fmt.Sprintf("CREATE TRIGGER refuse_marker BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s.refuse_marker()", table, schema),
		}
	case sqlstore.MySQL:
		stmts = []string{fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT refuse_marker CHECK ((metadata IS NULL OR metadata NOT LIKE '%%refuse-me%%') AND name NOT LIKE '%%refuse-me%%')", table)}
	default:
		t.Fatalf("no refusal to inject on %s", b.Name)
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// A value the database refuses though Write.Validate takes it: written to
// the store, the metadata is dropped from the write with a warning that
// names the field and not its value, and the rest of the write applies;
// in a batch, that one write is skipped and reported, and the others
// apply.
func TestRefusedMetadataIsDroppedAndLogged(t *testing.T) {
	for _, b := range backends[1:] { // the servers: SQLite holds any text
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, table := b.Open(t)
			var logs bytes.Buffer
			s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect, Table: table, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			refuseMarker(t, db, b, table)
			const iss = "https://issuer.test"
			write := func(sub string, v usersync.Version, fields usersync.Fields, p usersync.Profile) usersync.Write {
				return usersync.Write{ID: "id-" + sub, Issuer: iss, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(iss, sub),
					Version: v, Fields: fields, Profile: p, At: time.Now()}
			}
			bad := json.RawMessage(`{"note":"refuse-me"}`)
			if probe := write("probe", 1, usersync.FieldMetadata, usersync.Profile{Metadata: bad}); probe.Validate() != nil {
				t.Fatal("Validate refuses the marker")
			}
			if _, _, err := s.Upsert(ctx, write("u", 10, usersync.AllFields, usersync.Profile{Name: "Old", Metadata: json.RawMessage(`{"k":1}`)})); err != nil {
				t.Fatal(err)
			}
			u, o, err := s.Upsert(ctx, write("u", 20, usersync.FieldName|usersync.FieldMetadata, usersync.Profile{Name: "New", Metadata: bad}))
			if err != nil || o != usersync.Updated || u.Name != "New" || !jsonEq(u.Metadata, `{"k":1}`) {
				t.Fatalf("the write: %v, %v, %q, %s; want Updated, renamed, the old metadata", o, err, u.Name, u.Metadata)
			}
			line := logs.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, `"level":"WARN"`) || !strings.Contains(line, `"field":"metadata"`) {
				t.Errorf("the warning: %s", line)
			}
			if strings.Contains(line, "refuse-me") {
				t.Errorf("the warning quotes the value: %s", line)
			}
			// The dropped field kept its version: an older write of it
			// still applies.
			if u, o, err := s.Upsert(ctx, write("u", 15, usersync.FieldMetadata, usersync.Profile{Metadata: json.RawMessage(`{"k":2}`)})); err != nil || o != usersync.Updated || !jsonEq(u.Metadata, `{"k":2}`) {
				t.Fatalf("an older metadata after the drop: %v, %v, %s", o, err, u.Metadata)
			}
			// A new user is created with the rest of the write.
			if c, o, err := s.Upsert(ctx, write("c", 5, usersync.FieldName|usersync.FieldMetadata, usersync.Profile{Name: "C", Metadata: bad})); err != nil || o != usersync.Created || c.Name != "C" || c.Metadata != nil {
				t.Fatalf("a new user with it: %v, %v, %q, %s", o, err, c.Name, c.Metadata)
			}

			// In a batch, the metadata is dropped as Upsert drops it; a
			// write the database still refuses (its name) is skipped and
			// reported; the others apply.
			logs.Reset()
			ws := []usersync.Write{
				write("a", 1, usersync.FieldName, usersync.Profile{Name: "A"}),
				write("b", 1, usersync.FieldName|usersync.FieldMetadata, usersync.Profile{Name: "B", Metadata: bad}),
				write("u", 30, usersync.FieldName|usersync.FieldMetadata, usersync.Profile{Name: "Newer", Metadata: bad}),
				write("n", 1, usersync.FieldName, usersync.Profile{Name: "refuse-me"}),
			}
			_, outcomes, err := s.UpsertBatch(ctx, ws)
			var we *usersync.WriteError
			if !errors.Is(err, usersync.ErrInvalid) || !errors.As(err, &we) || we.Index != 3 || strings.Contains(err.Error(), "refuse-me") ||
				len(err.(interface{ Unwrap() []error }).Unwrap()) != 1 {
				t.Fatalf("the batch's error: %v; want write 3 alone", err)
			}
			if want := []usersync.Outcome{usersync.Created, usersync.Created, usersync.Updated, usersync.Stale}; fmt.Sprint(outcomes) != fmt.Sprint(want) {
				t.Fatalf("the batch's outcomes %v, want %v", outcomes, want)
			}
			if _, err := s.GetByTokenIdentifier(ctx, ws[3].TokenIdentifier); !errors.Is(err, usersync.ErrNotFound) {
				t.Fatalf("the refused write was stored: %v", err)
			}
			for _, w := range ws[:3] {
				if u, err := s.GetByTokenIdentifier(ctx, w.TokenIdentifier); err != nil || u.Name != w.Profile.Name || u.Metadata != nil && w.Subject != "u" {
					t.Fatalf("%s after the batch: %q %s, %v", w.Subject, u.Name, u.Metadata, err)
				}
			}
			if u, _ := s.GetByTokenIdentifier(ctx, ws[2].TokenIdentifier); !jsonEq(u.Metadata, `{"k":2}`) {
				t.Fatalf("u's metadata after the batch: %s, want the stored one", u.Metadata)
			}
			if n := strings.Count(logs.String(), `"field":"metadata"`); n != 2 || strings.Contains(logs.String(), "refuse-me") {
				t.Fatalf("the batch's warnings: %s", logs.String())
			}

			// Through a Syncer: the writes it skips itself and those the
			// store skipped are named by their place in its batch, and
			// OnChange sees every change the store made.
			var changed []string
			syncer, err := usersync.New(usersync.Config{Store: s, Logger: slog.New(slog.DiscardHandler),
				OnChange: func(_ context.Context, c usersync.Change) { changed = append(changed, c.UserID) }})
			if err != nil {
				t.Fatal(err)
			}
			sw := func(sub string, p usersync.Profile) usersync.Write {
				return usersync.Write{Issuer: iss, Subject: sub, Version: 40, Fields: usersync.FieldName | usersync.FieldMetadata, Profile: p}
			}
			outcomes, err = syncer.UpsertBatch(ctx, []usersync.Write{
				{Issuer: iss, Subject: "", Version: 40, Fields: usersync.FieldName}, // no subject: the Syncer skips it
				sw("d", usersync.Profile{Name: "D"}),
				sw("e", usersync.Profile{Name: "refuse-me"}), // the store skips it
				sw("f", usersync.Profile{Name: "F"}),
			})
			var first, second *usersync.WriteError
			if joined, ok := err.(interface{ Unwrap() []error }); !ok || len(joined.Unwrap()) != 2 ||
				!errors.As(joined.Unwrap()[0], &first) || !errors.As(joined.Unwrap()[1], &second) || first.Index != 0 || second.Index != 2 ||
				!errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("the Syncer's error: %v; want writes 0 and 2", err)
			}
			if want := []usersync.Outcome{usersync.Stale, usersync.Created, usersync.Stale, usersync.Created}; fmt.Sprint(outcomes) != fmt.Sprint(want) {
				t.Fatalf("the Syncer's outcomes %v, want %v", outcomes, want)
			}
			if len(changed) != 2 {
				t.Fatalf("OnChange saw %d changes, want 2", len(changed))
			}
		})
	}
}

// jsonEq reports whether got is the JSON of want, spacing aside.
func jsonEq(got json.RawMessage, want string) bool {
	var a, b any
	return json.Unmarshal(got, &a) == nil && json.Unmarshal([]byte(want), &b) == nil && fmt.Sprint(a) == fmt.Sprint(b)
}
