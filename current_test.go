package usersync_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/usersync/usersync"
)

const iss = "https://clerk.example.com"

func identity(sub, name string, iat time.Time) *usersync.Identity {
	return &usersync.Identity{
		Issuer: iss, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(iss, sub),
		Name: name, IssuedAt: iat, Expiry: iat.Add(time.Minute),
	}
}

func withIdentity(id *usersync.Identity) context.Context {
	return usersync.NewContext(context.Background(), id)
}

func TestStoreCurrentUser(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name     string
		tokens   []*usersync.Identity
		wantName string
	}{
		{"creates with the token's name", []*usersync.Identity{identity("u1", "Ada", t0)}, "Ada"},
		{"creates as Anonymous without a name claim", []*usersync.Identity{identity("u1", "", t0)}, "Anonymous"},
		{"a newer token refreshes the name", []*usersync.Identity{identity("u1", "Ada", t0), identity("u1", "Ada L", t0.Add(time.Minute))}, "Ada L"},
		{"an older token does not roll the name back", []*usersync.Identity{identity("u1", "Ada L", t0.Add(time.Minute)), identity("u1", "Ada", t0)}, "Ada L"},
		{"a token without a name keeps the stored one", []*usersync.Identity{identity("u1", "Ada", t0), identity("u1", "", t0.Add(time.Minute))}, "Ada"},
		{"given and family names make the name", []*usersync.Identity{{Issuer: iss, Subject: "u1", TokenIdentifier: iss + "|u1", GivenName: " Ada ", FamilyName: "Lovelace", IssuedAt: t0}}, "Ada Lovelace"},
		{"a token without iat or nbf only creates", []*usersync.Identity{identity("u1", "Ada", t0), {Issuer: iss, Subject: "u1", TokenIdentifier: iss + "|u1", Name: "Unordered"}}, "Ada"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSyncer(t, nil, nil)
			var ids []string
			for _, id := range tt.tokens {
				u, err := s.StoreCurrentUser(withIdentity(id))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, u.ID)
			}
			u, err := s.CurrentUser(withIdentity(tt.tokens[0]))
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

// A token with an email but no email_verified claim leaves the stored
// flag alone: "missing is not empty" holds per claim.
func TestStoreCurrentUserEmailVerifiedMissing(t *testing.T) {
	s := newSyncer(t, nil, nil)
	ctx := context.Background()
	t0 := time.Unix(1_700_000_000, 0)
	// The webhook stored a verified email.
	if _, _, err := s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u1", Version: usersync.Version(t0.UnixMilli()),
		Fields: usersync.AllFields, Profile: usersync.Profile{Name: "Ada", Email: "ada@example.com", EmailVerified: true}}); err != nil {
		t.Fatal(err)
	}
	// A later token carries the email, not email_verified.
	id := identity("u1", "", t0.Add(time.Minute))
	id.Email = "ada@example.com"
	u, err := s.StoreCurrentUser(withIdentity(id))
	if err != nil || !u.EmailVerified || u.Email != "ada@example.com" {
		t.Fatalf("after a token without email_verified: %+v, %v; want the email still verified", u.Profile, err)
	}
	// One that says false is carried.
	no := false
	id = identity("u1", "", t0.Add(2*time.Minute))
	id.EmailVerified = &no
	if u, err = s.StoreCurrentUser(withIdentity(id)); err != nil || u.EmailVerified {
		t.Fatalf("after email_verified false: %+v, %v", u.Profile, err)
	}
}

// CurrentUser tells "no identity", "not stored yet" and "deleted" apart
// without writing anything.
func TestCurrentUser(t *testing.T) {
	s := newSyncer(t, nil, nil)
	ctx := withIdentity(identity("u1", "Ada", time.Now()))
	if _, err := s.CurrentUser(context.Background()); !errors.Is(err, usersync.ErrNoToken) {
		t.Fatalf("without identity: err = %v, want ErrNoToken", err)
	}
	if _, err := s.CurrentUser(ctx); !errors.Is(err, usersync.ErrNotFound) || errors.Is(err, usersync.ErrDeleted) {
		t.Fatalf("before store: err = %v, want ErrNotFound only", err)
	}
	stored, err := s.StoreCurrentUser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CurrentUser(ctx)
	if err != nil || u.ID != stored.ID || u.Name != "Ada" {
		t.Fatalf("after store: %+v, %v", u, err)
	}
	if _, _, err := s.Delete(context.Background(), iss, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CurrentUser(ctx); !errors.Is(err, usersync.ErrDeleted) {
		t.Fatalf("after delete: err = %v, want ErrDeleted", err)
	}
	if _, err := s.StoreCurrentUser(context.Background()); !errors.Is(err, usersync.ErrNoToken) {
		t.Fatalf("StoreCurrentUser without identity: err = %v, want ErrNoToken", err)
	}
}

func TestStoreCurrentUserRefusesDeletedUser(t *testing.T) {
	s := newSyncer(t, nil, nil)
	if _, err := s.StoreCurrentUser(withIdentity(identity("u1", "Ada", time.Now()))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Delete(context.Background(), iss, "u1"); err != nil {
		t.Fatal(err)
	}
	// The session token stays valid for up to a minute after the delete.
	later := withIdentity(identity("u1", "Ada", time.Now().Add(time.Second)))
	if _, err := s.StoreCurrentUser(later); !errors.Is(err, usersync.ErrDeleted) {
		t.Fatalf("StoreCurrentUser after delete: err = %v, want ErrDeleted", err)
	}
}

// A token with a new email and no email_verified stores the new address as
// unverified: the flag belonged to the old one. The same address without
// a flag keeps it.
func TestStoreCurrentUserEmailVerifiedBelongsToTheAddress(t *testing.T) {
	s := newSyncer(t, nil, nil)
	ctx := context.Background()
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	if _, _, err := s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u1", Version: usersync.Version(at.UnixMilli()),
		Fields: usersync.FieldEmail | usersync.FieldEmailVerified, Profile: usersync.Profile{Email: "ada@example.com", EmailVerified: true}}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		email    string
		verified bool
	}{
		{"ada@example.com", true},  // the same address, no flag: kept
		{"ada@new.example", false}, // a new address, no flag: unverified
		{"ada@example.com", true},  // the verified address again
	} {
		id := identity("u1", "Ada", at.Add(time.Duration(i+1)*time.Minute))
		id.Email = tc.email
		u, err := s.StoreCurrentUser(withIdentity(id))
		if err != nil || u.Email != tc.email || u.EmailVerified != tc.verified {
			t.Fatalf("token %d with %s: verified %v, %v; want %v", i, tc.email, u.EmailVerified, err, tc.verified)
		}
	}
}
