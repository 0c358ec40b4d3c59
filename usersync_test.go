package usersync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

func TestOnChange(t *testing.T) {
	var mu sync.Mutex
	var got []string
	s, err := usersync.New(usersync.Config{
		Store: memstore.New(),
		Now:   func() time.Time { return time.Unix(1, 0) },
		NewID: func() string { return "fixed-id" },
		OnChange: func(_ context.Context, c usersync.Change) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, fmt.Sprintf("%v %s %s", c.Outcome, c.User.ID, c.User.Name))
		},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	up := func(v usersync.Version, name string) {
		if _, _, err := s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u1", Version: v, Fields: usersync.FieldName, Profile: usersync.Profile{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	up(1, "a")
	up(2, "b")
	up(2, "b") // stale: no callback
	if _, _, err := s.Delete(ctx, iss, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Delete(ctx, iss, "u1"); err != nil { // stale
		t.Fatal(err)
	}
	want := "[created fixed-id a updated fixed-id b deleted fixed-id ]"
	if fmt.Sprint(got) != want {
		t.Fatalf("OnChange saw %v, want %v", got, want)
	}
}

func TestUpsertRejectsBadInput(t *testing.T) {
	store := memstore.New()
	s := newSyncer(t, store, nil)
	ctx := context.Background()
	for name, w := range map[string]usersync.Write{
		"no issuer":                {Subject: "u1", Version: 1},
		"no subject":               {Issuer: iss, Version: 1},
		"bad fields":               {Issuer: iss, Subject: "u1", Version: 1, Fields: 1 << 15},
		"bad version":              {Issuer: iss, Subject: "u1", Version: -5},
		"fields without version":   {Issuer: iss, Subject: "u1", Fields: usersync.FieldName, Profile: usersync.Profile{Name: "x"}},
		"version past year 9999":   {Issuer: iss, Subject: "u1", Version: 1 << 62, Fields: usersync.FieldName},
		"another token identifier": {Issuer: iss, Subject: "u1", TokenIdentifier: iss + "|u2", Version: 1},
	} {
		if _, _, err := s.Upsert(ctx, w); !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := s.Delete(ctx, "", "u1"); !errors.Is(err, usersync.ErrInvalid) {
		t.Errorf("Delete without issuer: err = %v, want ErrInvalid", err)
	}
	if n, _ := store.Count(ctx); n != 0 {
		t.Fatalf("%d users stored", n)
	}
	if _, err := usersync.New(usersync.Config{}); !errors.Is(err, usersync.ErrInvalid) {
		t.Errorf("New without a store: err = %v, want ErrInvalid", err)
	}
}

// A field no store can hold is dropped, logged and the rest applied: one
// bad field does not lose the others.
func TestUpsertDropsFieldsNoStoreCanHold(t *testing.T) {
	store := memstore.New()
	var logs strings.Builder
	s, err := usersync.New(usersync.Config{Store: store, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u1", Version: 1, Fields: usersync.AllFields,
		Profile: usersync.Profile{Name: "Ada", Email: "old@example.com", Metadata: json.RawMessage(`{"plan":"free"}`)}}); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]usersync.Profile{
		"metadata nested too deep": {Name: "Ada L", Email: "new@example.com", Metadata: json.RawMessage(strings.Repeat("[", 40) + strings.Repeat("]", 40))},
		"metadata out of range":    {Name: "Ada L", Email: "new@example.com", Metadata: json.RawMessage(`{"n":1e200000}`)},
		"metadata with a NUL":      {Name: "Ada L", Email: "new@example.com", Metadata: json.RawMessage(`{"a":"\u0000"}`)},
		// Finite float64s that PostgreSQL refuses (22003).
		"metadata PostgreSQL refuses": {Name: "Ada L", Email: "new@example.com", Metadata: json.RawMessage(`{"n":1e-16384}`)},
		"a zero PostgreSQL refuses":   {Name: "Ada L", Email: "new@example.com", Metadata: json.RawMessage(`{"n":0e-20000}`)},
		// Under 64 KiB as sent, over it once each invalid byte is U+FFFD.
		"metadata too large once normalised": {Name: "Ada L", Email: "new@example.com", Metadata: json.RawMessage(`"` + strings.Repeat("\xff", 30_000) + `"`)},
	} {
		logs.Reset()
		u, outcome, err := s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u1", Version: 2, Fields: usersync.AllFields, Profile: bad})
		if err != nil || outcome != usersync.Updated || u.Name != "Ada L" || u.Email != "new@example.com" || string(u.Metadata) != `{"plan":"free"}` {
			t.Fatalf("%s: %+v %v, %v; want the rename and email applied, the old metadata kept", name, u.Profile, outcome, err)
		}
		if !strings.Contains(logs.String(), "metadata") || strings.Contains(logs.String(), "Ada") {
			t.Fatalf("%s: log %q: want the dropped field named, no personal data", name, logs.String())
		}
		// Back to version 1 for the next case.
		store = memstore.New()
		s, _ = usersync.New(usersync.Config{Store: store, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u1", Version: 1, Fields: usersync.AllFields,
			Profile: usersync.Profile{Name: "Ada", Email: "old@example.com", Metadata: json.RawMessage(`{"plan":"free"}`)}})
	}
	// A bad text field is dropped the same way, also on creation.
	u, _, err := s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u2", Version: 1, Fields: usersync.AllFields, Profile: usersync.Profile{Name: "Bad\x00Name", Email: "b@example.com"}})
	if err != nil || u.Name != "" || u.Email != "b@example.com" {
		t.Fatalf("NUL in the name: %+v, %v", u.Profile, err)
	}
}

// A version far in the future would freeze every field it writes: it is
// refused, for webhooks and tokens alike.
func TestUpsertRefusesVersionsFromTheFuture(t *testing.T) {
	s := newSyncer(t, nil, nil)
	future := usersync.Version(time.Now().Add(time.Hour).UnixMilli())
	if _, _, err := s.Upsert(context.Background(), usersync.Write{Issuer: iss, Subject: "u1", Version: future, Fields: usersync.FieldName}); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("version an hour ahead: err = %v, want ErrInvalid", err)
	}
	soon := usersync.Version(time.Now().Add(time.Minute).UnixMilli())
	if _, _, err := s.Upsert(context.Background(), usersync.Write{Issuer: iss, Subject: "u1", Version: soon, Fields: usersync.FieldName}); err != nil {
		t.Fatalf("version a minute ahead (clock skew): %v", err)
	}
}

// The Syncer canonicalises the issuer: with or without a trailing slash,
// webhook writes and token writes meet in one row.
func TestUpsertCanonicalIssuer(t *testing.T) {
	s := newSyncer(t, nil, nil)
	ctx := context.Background()
	a, _, err := s.Upsert(ctx, usersync.Write{Issuer: iss + "/", Subject: "u1", Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "A"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.StoreCurrentUser(withIdentity(identity("u1", "B", time.UnixMilli(2))))
	if err != nil || b.ID != a.ID || a.Issuer != iss || b.Name != "B" {
		t.Fatalf("two rows or wrong issuer: %+v / %+v, %v", a, b, err)
	}
}

func TestDefaultIDsSortByCreation(t *testing.T) {
	s := newSyncer(t, nil, nil)
	prev := ""
	for i := range 50 {
		u, _, err := s.Upsert(context.Background(), usersync.Write{Issuer: iss, Subject: fmt.Sprint("u", i), Version: 1, Fields: usersync.FieldName})
		if err != nil {
			t.Fatal(err)
		}
		if len(u.ID) != 36 || u.ID <= prev {
			t.Fatalf("ID %q after %q: want growing UUIDs", u.ID, prev)
		}
		prev = u.ID
	}
	m, err := s.Store().GetMany(context.Background(), []string{prev})
	if err != nil || m[prev].Subject != "u49" {
		t.Fatalf("GetMany = %+v, %v", m, err)
	}
}

// UpsertBatch applies the good writes, skips the malformed ones and says
// which, and calls OnChange for every change.
func TestUpsertBatch(t *testing.T) {
	var changes []string
	s, err := usersync.New(usersync.Config{Store: memstore.New(), Logger: quiet, OnChange: func(_ context.Context, c usersync.Change) {
		changes = append(changes, c.Outcome.String()+" "+c.User.Subject)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := func(sub string, v usersync.Version, name string) usersync.Write {
		return usersync.Write{Issuer: iss, Subject: sub, Version: v, Fields: usersync.FieldName | usersync.FieldMetadata,
			Profile: usersync.Profile{Name: name, Metadata: json.RawMessage(`{"ok":true}`)}}
	}
	bad := w("u3", 0, "no version")
	badMeta := w("u4", 1, "Dora")
	badMeta.Profile.Metadata = json.RawMessage(`{"n":1e999}`)
	future := w("u5", usersync.Version(time.Now().Add(time.Hour).UnixMilli()), "Eve")
	outcomes, err := s.UpsertBatch(ctx, []usersync.Write{w("u1", 1, "Ada"), w("u2", 1, "Bob"), bad, w("u1", 2, "Ada L"), w("u1", 2, "stale"), badMeta, future})
	if !errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), "write 2") || !strings.Contains(err.Error(), "write 6") || strings.Contains(err.Error(), "write 5") {
		t.Fatalf("err = %v, want ErrInvalid naming writes 2 and 6", err)
	}
	want := []usersync.Outcome{usersync.Created, usersync.Created, usersync.Stale, usersync.Updated, usersync.Stale, usersync.Created, usersync.Stale}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Fatalf("outcomes %v, want %v", outcomes, want)
	}
	if fmt.Sprint(changes) != "[created u1 created u2 updated u1 created u4]" {
		t.Fatalf("OnChange saw %v", changes)
	}
	fs, _ := usersync.New(usersync.Config{Store: failingBatchStore{memstore.New()}, Logger: quiet})
	if outcomes, err := fs.UpsertBatch(ctx, []usersync.Write{w("u1", 1, "Ada")}); err == nil || outcomes != nil {
		t.Fatalf("a failing store: %v, %v; want its error and no outcomes", outcomes, err)
	}
}

type failingBatchStore struct{ usersync.Store }

func (failingBatchStore) UpsertBatch(context.Context, []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	return nil, nil, errDown
}
