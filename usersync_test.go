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

const iss = "https://clerk.example.com"

func identity(sub, name string, iat time.Time) *usersync.Identity {
	return &usersync.Identity{
		Issuer: iss, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(iss, sub),
		Name: name, IssuedAt: iat, Expiry: iat.Add(time.Minute),
	}
}

func TestStoreCurrentUser(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name     string
		tokens   []*usersync.Identity
		wantName string
	}{
		{"creates with the token's name", []*usersync.Identity{identity("u1", "Ada", t0)}, "Ada"},
		{"creates as Anonymous without a name claim", []*usersync.Identity{identity("u1", "", t0)}, usersync.DefaultName},
		{"a newer token refreshes the name", []*usersync.Identity{identity("u1", "Ada", t0), identity("u1", "Ada L", t0.Add(time.Minute))}, "Ada L"},
		{"an older token does not roll the name back", []*usersync.Identity{identity("u1", "Ada L", t0.Add(time.Minute)), identity("u1", "Ada", t0)}, "Ada L"},
		{"a token without a name keeps the stored one", []*usersync.Identity{identity("u1", "Ada", t0), identity("u1", "", t0.Add(time.Minute))}, "Ada"},
		{"given and family names make the name", []*usersync.Identity{{Issuer: iss, Subject: "u1", GivenName: " Ada ", FamilyName: "Lovelace", IssuedAt: t0}}, "Ada Lovelace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := usersync.New(memstore.New())
			var ids []string
			for _, id := range tt.tokens {
				u, err := s.StoreCurrentUser(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, u.ID)
			}
			u, err := s.GetCurrentOrErr(usersync.NewContext(context.Background(), tt.tokens[0]))
			if err != nil {
				t.Fatal(err)
			}
			if u.Name != tt.wantName {
				t.Errorf("name = %q, want %q", u.Name, tt.wantName)
			}
			for _, id := range ids {
				if id != u.ID {
					t.Errorf("StoreCurrentUser returned IDs %v, stored %q", ids, u.ID)
				}
			}
		})
	}
}

func TestStoreCurrentUserRefusesDeletedUser(t *testing.T) {
	s := usersync.New(memstore.New())
	ctx := context.Background()
	id := identity("u1", "Ada", time.Now())
	if _, err := s.StoreCurrentUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Delete(ctx, iss, "u1"); err != nil {
		t.Fatal(err)
	}
	// The session token stays valid for up to a minute after the delete.
	later := identity("u1", "Ada", time.Now().Add(time.Second))
	if _, err := s.StoreCurrentUser(ctx, later); !errors.Is(err, usersync.ErrDeleted) {
		t.Fatalf("StoreCurrentUser after delete: err = %v, want ErrDeleted", err)
	}
	if _, err := s.EnsureCurrent(usersync.NewContext(ctx, later)); !errors.Is(err, usersync.ErrDeleted) {
		t.Fatalf("EnsureCurrent after delete: err = %v, want ErrDeleted", err)
	}
}

func TestGetCurrent(t *testing.T) {
	s := usersync.New(memstore.New())
	ctx := context.Background()
	id := identity("u1", "Ada", time.Now())
	withID := usersync.NewContext(ctx, id)

	if u, err := s.GetCurrent(ctx); u != nil || err != nil {
		t.Fatalf("GetCurrent without identity = %v, %v; want nil, nil", u, err)
	}
	if _, err := s.GetCurrentOrErr(ctx); !errors.Is(err, usersync.ErrNoIdentity) {
		t.Fatalf("GetCurrentOrErr without identity: err = %v, want ErrNoIdentity", err)
	}
	if u, err := s.GetCurrent(withID); u != nil || err != nil {
		t.Fatalf("GetCurrent before store = %v, %v; want nil, nil", u, err)
	}
	if _, err := s.GetCurrentOrErr(withID); !errors.Is(err, usersync.ErrNotFound) {
		t.Fatalf("GetCurrentOrErr before store: err = %v, want ErrNotFound", err)
	}
	ensured, err := s.EnsureCurrent(withID)
	if err != nil || ensured.Name != "Ada" {
		t.Fatalf("EnsureCurrent = %+v, %v", ensured, err)
	}
	u, err := s.GetCurrent(withID)
	if err != nil || u == nil || u.ID != ensured.ID {
		t.Fatalf("GetCurrent after EnsureCurrent = %+v, %v", u, err)
	}
	again, err := s.EnsureCurrent(withID)
	if err != nil || again.ID != ensured.ID {
		t.Fatalf("second EnsureCurrent = %+v, %v", again, err)
	}
	got, err := s.Get(ctx, u.ID)
	if err != nil || got.TokenIdentifier != id.TokenIdentifier {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	m, err := s.GetMany(ctx, []string{u.ID, "missing"})
	if err != nil || len(m) != 1 {
		t.Fatalf("GetMany = %v, %v", m, err)
	}
}

func TestOnChange(t *testing.T) {
	var mu sync.Mutex
	var got []string
	s := usersync.New(memstore.New(),
		usersync.WithClock(func() time.Time { return time.Unix(1, 0) }),
		usersync.WithIDGenerator(func() string { return "fixed-id" }),
		usersync.WithOnChange(func(_ context.Context, c usersync.Change) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, fmt.Sprintf("%v %s %s", c.Outcome, c.User.ID, c.User.Name))
		}))
	ctx := context.Background()
	up := func(v usersync.Version, name string) {
		if _, _, err := s.Upsert(ctx, usersync.Update{Issuer: iss, Subject: "u1", Version: v, Fields: usersync.FieldName, Profile: usersync.Profile{Name: name}}); err != nil {
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
	s := usersync.New(memstore.New())
	ctx := context.Background()
	for name, u := range map[string]usersync.Update{
		"no issuer":   {Subject: "u1", Version: 1},
		"no subject":  {Issuer: iss, Version: 1},
		"bad fields":  {Issuer: iss, Subject: "u1", Fields: 1 << 7},
		"bad version": {Issuer: iss, Subject: "u1", Version: -5},
	} {
		if _, _, err := s.Upsert(ctx, u); !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := s.Delete(ctx, "", "u1"); !errors.Is(err, usersync.ErrInvalid) {
		t.Errorf("Delete without issuer: err = %v, want ErrInvalid", err)
	}
	if _, err := s.StoreCurrentUser(ctx, nil); !errors.Is(err, usersync.ErrNoIdentity) {
		t.Errorf("StoreCurrentUser(nil): err = %v, want ErrNoIdentity", err)
	}
}

func TestDefaultIDsSortByCreation(t *testing.T) {
	s := usersync.New(memstore.New())
	prev := ""
	for i := range 50 {
		u, _, err := s.Upsert(context.Background(), usersync.Update{Issuer: iss, Subject: fmt.Sprint("u", i), Version: 1, Fields: usersync.FieldName})
		if err != nil {
			t.Fatal(err)
		}
		if len(u.ID) != 36 || u.ID <= prev {
			t.Fatalf("ID %q after %q: want growing UUIDs", u.ID, prev)
		}
		prev = u.ID
	}
}
