package usersync_test

import (
	"context"
	"errors"
	"fmt"
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
	u, err := s.Get(context.Background(), prev)
	if err != nil || u.Subject != "u49" {
		t.Fatalf("Get = %+v, %v", u, err)
	}
}
