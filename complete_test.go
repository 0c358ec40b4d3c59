package usersync_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/usersynctest"
)

// CompleteUser is called once, when a token's claims create the user, and
// the request goes on with the user it returns.
func TestCompleteUser(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	ctx := context.Background()
	tests := []struct {
		name string
		// before runs first: a webhook's write, a delete.
		before func(s *usersync.Syncer) error
		// hook returns what the hook returns for the created user u.
		hook       func(s *usersync.Syncer, u usersync.User) usersync.User
		wantCalls  int
		wantErr    error
		wantName   string // of the user StoreCurrentUser returns first
		wantStored string // the name stored in the end
	}{
		{
			name: "the created user is completed",
			hook: func(s *usersync.Syncer, u usersync.User) usersync.User {
				c, _, err := s.Upsert(ctx, usersync.Write{Issuer: u.Issuer, Subject: u.Subject, Version: usersync.Version(t0.UnixMilli()),
					Fields: usersync.FieldName | usersync.FieldEmail, Profile: usersync.Profile{Name: "Ada", Email: "ada@example.com"}})
				if err != nil {
					t.Error(err)
				}
				return c
			},
			wantCalls: 1, wantName: "Ada", wantStored: "Ada",
		},
		{
			name:      "the request goes on with the token's user when the hook returns it",
			hook:      func(_ *usersync.Syncer, u usersync.User) usersync.User { return u },
			wantCalls: 1, wantName: "Anonymous", wantStored: "Anonymous",
		},
		{
			name: "a user of another ID is ignored",
			hook: func(_ *usersync.Syncer, u usersync.User) usersync.User {
				return usersync.User{ID: "someone-else", Profile: usersync.Profile{Name: "Eve"}}
			},
			wantCalls: 1, wantName: "Anonymous", wantStored: "Anonymous",
		},
		{
			name: "a user the webhook stored first is not completed",
			before: func(s *usersync.Syncer) error {
				_, _, err := s.Upsert(ctx, usersync.Write{Issuer: iss, Subject: "u1", Version: usersync.Version(t0.UnixMilli()),
					Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Grace"}})
				return err
			},
			hook:      func(_ *usersync.Syncer, u usersync.User) usersync.User { return u },
			wantCalls: 0, wantName: "Grace", wantStored: "Grace",
		},
		{
			name: "a deleted user is not completed",
			before: func(s *usersync.Syncer) error {
				_, _, err := s.Delete(ctx, iss, "u1")
				return err
			},
			hook:      func(_ *usersync.Syncer, u usersync.User) usersync.User { return u },
			wantCalls: 0, wantErr: usersync.ErrDeleted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			var s *usersync.Syncer
			s = newSyncerWith(t, nil, nil, func(c *usersync.Config) {
				c.CompleteUser = func(_ context.Context, u usersync.User) usersync.User {
					calls.Add(1)
					return tt.hook(s, u)
				}
			})
			if tt.before != nil {
				if err := tt.before(s); err != nil {
					t.Fatal(err)
				}
			}
			id := identity("u1", "", time.Now())
			u, err := s.StoreCurrentUser(withIdentity(id))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("StoreCurrentUser: %v, want %v", err, tt.wantErr)
			}
			if err == nil && u.Name != tt.wantName {
				t.Errorf("the request's user is %q, want %q", u.Name, tt.wantName)
			}
			// Again: the user is stored, nothing is created, nothing completed.
			if _, err := s.StoreCurrentUser(withIdentity(identity("u1", "", time.Now().Add(time.Second)))); !errors.Is(err, tt.wantErr) {
				t.Fatalf("StoreCurrentUser again: %v", err)
			}
			if n := calls.Load(); int(n) != tt.wantCalls {
				t.Errorf("CompleteUser called %d times, want %d", n, tt.wantCalls)
			}
			if stored, err := s.CurrentUser(withIdentity(id)); err == nil && stored.Name != tt.wantStored {
				t.Errorf("stored name %q, want %q", stored.Name, tt.wantStored)
			}
		})
	}
}

// Concurrent first requests of one person create the user once, so
// CompleteUser runs once, and every request gets the same user.
func TestCompleteUserOnceForConcurrentFirstRequests(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, nil, a)
	var calls atomic.Int32
	s := newSyncerWith(t, nil, v, func(c *usersync.Config) {
		c.CompleteUser = func(_ context.Context, u usersync.User) usersync.User {
			calls.Add(1)
			return u
		}
	})
	var mu sync.Mutex
	ids := map[string]bool{}
	h := s.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := usersync.UserFromContext(r.Context())
		mu.Lock()
		ids[u.ID] = true
		mu.Unlock()
	}))
	token := a.Token(map[string]any{"sub": "user_concurrent"})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Errorf("status %d", w.Code)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("CompleteUser called %d times, want 1", n)
	}
	if len(ids) != 1 {
		t.Errorf("the requests saw %d users, want 1", len(ids))
	}
}
