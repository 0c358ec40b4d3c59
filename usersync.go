package usersync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
)

// DefaultName is the name StoreCurrentUser gives a user whose token carries
// none, as the reference page does.
const DefaultName = "Anonymous"

// Syncer keeps a Store in step with an identity provider: the webhook
// handler calls Upsert and Delete, request handlers call StoreCurrentUser,
// EnsureCurrent and GetCurrent. It is safe for concurrent use.
type Syncer struct {
	store    Store
	log      *slog.Logger
	now      func() time.Time
	newID    func() string
	onChange func(context.Context, Change)
}

// Change describes a write that changed stored state, as OnChange receives
// it: Created, Updated or Deleted, and the user as stored afterwards (for
// Deleted, the tombstone, whose ID apps use to anonymise their own rows).
type Change struct {
	Outcome Outcome
	User    User
}

// An Option configures a Syncer.
type Option func(*Syncer)

// WithLogger sets the logger; the default (and nil) is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Syncer) {
		if l != nil {
			s.log = l
		}
	}
}

// WithClock sets the source of local time for CreatedAt, UpdatedAt and
// DeletedAt; the default (and nil) is time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Syncer) {
		if now != nil {
			s.now = now
		}
	}
}

// WithIDGenerator sets how new user IDs are made; the default (and nil) is
// a UUIDv7 string, so IDs sort by creation time. IDs must be unique,
// non-empty and at most MaxIDLen bytes.
func WithIDGenerator(newID func() string) Option {
	return func(s *Syncer) {
		if newID != nil {
			s.newID = newID
		}
	}
}

// WithOnChange sets a function called after every write that changed stored
// state (never for Stale ones), in the goroutine of the write. Apps use it
// to react: anonymise their own rows on Deleted, invalidate caches.
func WithOnChange(fn func(context.Context, Change)) Option {
	return func(s *Syncer) { s.onChange = fn }
}

// New returns a Syncer over store.
func New(store Store, opts ...Option) *Syncer {
	s := &Syncer{store: store, log: slog.Default(), now: time.Now, newID: newUUIDv7}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Store returns the syncer's store.
func (s *Syncer) Store() Store { return s.store }

func newUUIDv7() string {
	id, err := uuid.NewV7()
	if err != nil { // only if the system's random source fails
		return uuid.NewString()
	}
	return id.String()
}

// Update is a versioned observation of a user from outside: what Upsert
// takes. Fields names the Profile fields it carries; the other Profile
// values are used only when the update creates the user.
type Update struct {
	Issuer  string
	Subject string
	Version Version
	Fields  Fields
	Profile Profile
}

// Upsert applies u to the user keyed by TokenIdentifier(u.Issuer,
// u.Subject), creating the user if needed, under the write rules of the
// package doc. It returns the user as stored and what the write did; a
// write aimed at a deleted user returns an error wrapping ErrDeleted.
func (s *Syncer) Upsert(ctx context.Context, u Update) (User, Outcome, error) {
	if u.Issuer == "" || u.Subject == "" {
		return User{}, Stale, fmt.Errorf("%w: empty issuer or subject", ErrInvalid)
	}
	w := Write{
		ID:              s.newID(),
		TokenIdentifier: TokenIdentifier(u.Issuer, u.Subject),
		Issuer:          u.Issuer,
		Subject:         u.Subject,
		Version:         u.Version,
		Fields:          u.Fields,
		Profile:         u.Profile,
		At:              s.now(),
	}
	if err := w.Validate(); err != nil {
		return User{}, Stale, err
	}
	user, outcome, err := s.store.Upsert(ctx, w)
	if err != nil {
		return user, outcome, err
	}
	s.changed(ctx, outcome, user)
	return user, outcome, nil
}

// Delete tombstones the user keyed by TokenIdentifier(issuer, subject), even
// one never seen, so that no later write brings them back. It returns the
// tombstone and Deleted, or Stale if it was already deleted.
func (s *Syncer) Delete(ctx context.Context, issuer, subject string) (User, Outcome, error) {
	if issuer == "" || subject == "" {
		return User{}, Stale, fmt.Errorf("%w: empty issuer or subject", ErrInvalid)
	}
	t := Tombstone{
		ID:              s.newID(),
		TokenIdentifier: TokenIdentifier(issuer, subject),
		Issuer:          issuer,
		Subject:         subject,
		At:              s.now(),
	}
	user, outcome, err := s.store.Delete(ctx, t)
	if err != nil {
		return user, outcome, err
	}
	s.changed(ctx, outcome, user)
	return user, outcome, nil
}

func (s *Syncer) changed(ctx context.Context, o Outcome, u User) {
	if o == Stale {
		return
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "usersync: user changed", "outcome", o.String(), "user_id", u.ID)
	}
	if s.onChange != nil {
		s.onChange(ctx, Change{Outcome: o, User: u.Clone()})
	}
}

// StoreCurrentUser stores the user of id: it creates them from the token's
// claims, or refreshes the claims that changed since (ordered by the
// token's iat, see Identity.Version). A user whose token carries no name is
// created as DefaultName. Claims the token lacks never wipe stored values.
// It refuses, with an error wrapping ErrDeleted, to bring back a deleted
// user whose token is still valid.
func (s *Syncer) StoreCurrentUser(ctx context.Context, id *Identity) (User, error) {
	if id == nil {
		return User{}, ErrNoIdentity
	}
	p, f := id.Profile()
	if p.Name == "" {
		p.Name = DefaultName // a default: used only if this write creates the user
	}
	u, _, err := s.Upsert(ctx, Update{Issuer: id.Issuer, Subject: id.Subject, Version: id.Version(), Fields: f, Profile: p})
	return u, err
}

// GetCurrent returns the stored user of the identity in ctx. It returns
// nil and no error when ctx has no identity or the user is not stored (or
// was deleted), as the reference page's getCurrentUser returns null; an
// error means the store failed.
func (s *Syncer) GetCurrent(ctx context.Context) (*User, error) {
	u, err := s.GetCurrentOrErr(ctx)
	switch {
	case errors.Is(err, ErrNoIdentity), errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &u, nil
}

// GetCurrentOrErr returns the stored user of the identity in ctx, or an
// error wrapping ErrNoIdentity or ErrNotFound.
func (s *Syncer) GetCurrentOrErr(ctx context.Context) (User, error) {
	id, ok := FromContext(ctx)
	if !ok {
		return User{}, ErrNoIdentity
	}
	return s.store.GetByToken(ctx, id.key())
}

// EnsureCurrent returns the stored user of the identity in ctx, storing
// them from the identity first if the webhook has not yet arrived: the
// server-side answer to "waiting for the current user to be stored". A
// deleted user gets an error wrapping ErrDeleted.
func (s *Syncer) EnsureCurrent(ctx context.Context) (User, error) {
	u, err := s.GetCurrentOrErr(ctx)
	if !errors.Is(err, ErrNotFound) {
		return u, err
	}
	id, _ := FromContext(ctx)
	return s.StoreCurrentUser(ctx, id)
}

// Get returns the live user with the given ID, or an error wrapping
// ErrNotFound.
func (s *Syncer) Get(ctx context.Context, id string) (User, error) {
	return s.store.Get(ctx, id)
}

// GetMany returns the live users among ids, keyed by ID, in one store call:
// use it to resolve the authors of a page of rows. Unknown and deleted IDs
// are absent.
func (s *Syncer) GetMany(ctx context.Context, ids []string) (map[string]User, error) {
	return s.store.GetMany(ctx, ids)
}
