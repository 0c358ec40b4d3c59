package usersync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/metadata"
	"github.com/usersync/usersync/internal/telemetry"
)

// Config configures a Syncer. Only Store is required; every other field
// has the default its comment gives.
type Config struct {
	// Store keeps the users.
	Store Store
	// Extractor finds the identity of a request for RequireUser, LoadUser
	// and RequireIdentity, which panic without one: a *jwtverify.Verifier,
	// or any other Extractor.
	Extractor Extractor
	// Sessions, if set, refuses the identities of ended sessions: after
	// the Extractor, the middlewares answer an identity it refuses with
	// 401 (ErrSessionEnded) or the status of its error. (With
	// jwtverify.Config.Sessions too, a session cookie's token of an ended
	// session counts as no token: LoadUser passes it on signed out.) A
	// *sessions.Set is one.
	Sessions SessionChecker
	// ErrorHandler writes the error responses of RequireUser, LoadUser and
	// RequireIdentity. The status comes from the error, in one place:
	//
	//	an error with HTTPStatus()    its status, if 400 to 599 (jwtverify:
	//	                              403 for a cross-site cookie request)
	//	ErrKeysUnavailable            503, with Retry-After
	//	ErrNoToken, ErrInvalidToken   401, with WWW-Authenticate (RFC 6750)
	//	ErrDeleted                    403
	//	ErrInvalid                    400 (claims that cannot be stored)
	//	anything else                 500 (the store failed)
	//
	// The first that matches counts: a session cookie that cannot be
	// checked because the keys are unavailable wraps ErrNoToken too, and
	// is a 503.
	//
	// The headers are set before it is called. Default: the status text as
	// text/plain, such as "unauthorized".
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Realm is the realm of WWW-Authenticate challenges. Default
	// "usersync".
	Realm string
	// DefaultName is the name a user gets when the token that creates them
	// carries none. Default "Anonymous".
	DefaultName string
	// NewID makes the IDs of new users. Default: a UUIDv7 string, so IDs
	// sort by creation time. IDs must be unique, non-empty and at most 128
	// bytes.
	NewID func() string
	// OnChange, if set, is called after every write that changed stored
	// state (never for Stale ones), in the goroutine of the write. It is a
	// best-effort, in-process hook, for caches and the like: it is not
	// called again if the process stops first, nor when the write commits
	// but reading the row back fails (the retry of such a write is Stale),
	// and what it returns cannot fail the write. Side effects that must
	// happen (erasing a deleted user's data, an email) belong to the
	// store's change feed: see package feed, which delivers every change at
	// least once, across replicas and crashes.
	OnChange func(context.Context, Change)
	// CompleteUser, if set, is called when a token's claims have just
	// created a user (RequireUser, LoadUser, StoreCurrentUser, when the
	// provider's webhook has not arrived yet), in the request's goroutine,
	// with the user as stored; never for a user that was already stored.
	// It returns the user the request goes on with: u, or u as a write of
	// its own stored it (a user it returns with another ID is ignored). A
	// token often carries less than the provider knows (Clerk's default
	// session token: no name, no email), and the hook fills in the rest from
	// the provider's API: clerk.Wire sets one. It holds the request, so it
	// must return promptly, and it cannot fail the request.
	CompleteUser func(ctx context.Context, u User) User
	// Now is the clock of CreatedAt, UpdatedAt and DeletedAt. Default
	// time.Now.
	Now func() time.Time
	// Logger logs changes (at debug level) and failures, with the trace
	// ID of the caller's span. Default
	// slog.Default().
	Logger *slog.Logger
}

// Change describes a write that changed stored state: Created, Updated or
// Deleted, the user's ID and the time of the write. Every such write
// appends one to the store's change feed (Store.Changes), in the same
// transaction, numbered by Seq; OnChange receives one too, with the user
// as stored afterwards (for Deleted, the tombstone, whose ID apps use to
// anonymise their own rows).
type Change struct {
	// Seq is the change's position in the feed: above 0, increasing in
	// the order the changes became visible, without gaps a reader could
	// skip. 0 in OnChange, which runs before the feed numbers it.
	Seq int64
	// Entity is what changed: a user (the zero value), an organization or
	// a membership (package orgs).
	Entity  Entity
	Outcome Outcome
	// UserID is the user's ID, in a change of a user.
	UserID string
	// OrganizationID is the provider's ID of the organization ("org_…"),
	// in a change of an organization or of a membership.
	OrganizationID string
	// Subject is the member's subject (the provider's user ID, Clerk's
	// user_id), in a change of a membership: the member's token identifier
	// is TokenIdentifier(issuer, Subject).
	Subject string
	// ExternalID is the user's ExternalID: the app's own key of the
	// person, if the provider carries one. In OnChange and sqlstore's
	// OnWrite hook it is the one after the write; in the feed, the user's
	// as the feed is read. A tombstone keeps it (and it never changes), so
	// a Deleted change names the app's row even when the app never linked
	// the user's ID to it.
	ExternalID string
	// At is the write's time (Write.At): the user's UpdatedAt after it.
	At time.Time
	// User is the user as stored after the write, in OnChange and
	// sqlstore's OnWrite hook only: the feed carries the ID, and a
	// consumer that needs more looks the user up (and may find a later
	// state).
	User User
}

// Entity is what a Change is about.
type Entity uint8

// The entities of the change feed.
const (
	// EntityUser is a user: the zero value, so every change of a store that
	// keeps users only is one.
	EntityUser Entity = iota
	// EntityOrganization is an organization (orgs.Organization).
	EntityOrganization
	// EntityMembership is a membership (orgs.Membership).
	EntityMembership
)

// String returns the entity's name in lower case.
func (e Entity) String() string {
	switch e {
	case EntityUser:
		return "user"
	case EntityOrganization:
		return "organization"
	case EntityMembership:
		return "membership"
	}
	return fmt.Sprintf("Entity(%d)", uint8(e))
}

// Syncer keeps a Store in step with an identity provider: webhook handlers
// call Upsert and Delete, request handlers sit behind RequireUser. It is
// safe for concurrent use.
type Syncer struct {
	cfg   Config
	store Store
	log   *slog.Logger
}

// New returns a Syncer for cfg. A nil Store is an error wrapping
// ErrInvalid.
func New(cfg Config) (*Syncer, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: usersync.Config needs a Store", ErrInvalid)
	}
	config.Default(&cfg.DefaultName, "Anonymous")
	config.Default(&cfg.Realm, "usersync")
	cfg.Realm = quoteless.Replace(cfg.Realm)
	if cfg.NewID == nil {
		cfg.NewID = newUUIDv7
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = telemetry.Logger(cfg.Logger)
	return &Syncer{cfg: cfg, store: cfg.Store, log: cfg.Logger}, nil
}

func newUUIDv7() string {
	id, err := uuid.NewV7()
	if err != nil { // only if the system's random source fails
		return uuid.NewString()
	}
	return id.String()
}

// Store returns the store the Syncer writes to: for the packages that
// build on the Syncer (reconcile, feed) and for reads the Syncer does not
// wrap.
func (s *Syncer) Store() Store { return s.store }

// Upsert applies w to the user TokenIdentifier(w.Issuer, w.Subject),
// creating the user if needed, under the write rules of the package doc.
// It fills in w's TokenIdentifier, and its ID and At unless set.
//
// A profile field no store can hold (text over 16 KiB, invalid UTF-8 or a
// NUL character; metadata too large, too deep, with a NUL or a number out
// of range) is dropped from the write and logged, and the rest applies:
// one bad field does not lose the others. A malformed key or version, or
// a version more than 10 minutes in the future (a clock or a token gone
// wrong: it would freeze the fields it wrote), fails with ErrInvalid, and
// a write aimed at a deleted user with ErrDeleted. Upsert returns the user
// as stored and what the write did.
func (s *Syncer) Upsert(ctx context.Context, w Write) (User, Outcome, error) {
	s.complete(&w)
	s.sanitize(ctx, &w)
	if w.Version > versionOf(s.cfg.Now().Add(maxFutureSkew)) {
		return User{}, Stale, fmt.Errorf("%w: version %d is more than %v in the future", ErrInvalid, w.Version, maxFutureSkew)
	}
	if err := w.validateKeys(); err != nil {
		return User{}, Stale, err
	}
	w.normalized = w.Profile.Metadata
	u, outcome, err := s.store.Upsert(ctx, w)
	if err != nil {
		return u, outcome, err
	}
	s.changed(ctx, outcome, u)
	return u, outcome, nil
}

// UpsertBatch applies ws as Upsert applies each, in one call of the store
// (one transaction in sqlstore): for imports and reconciles. Each write is
// completed, and its fields no store can hold dropped, as Upsert does; a
// write still malformed (its key or version), or one with a value the
// database refuses, is skipped and the others applied. It returns the
// outcome of each write (Stale for a skipped one, or one aimed at a
// deleted user) and, if it skipped any, an error joining a *WriteError per
// skipped write, each wrapping ErrInvalid. If the store fails, nothing is
// applied, and it returns no outcomes and the store's error. OnChange is
// called for every change.
func (s *Syncer) UpsertBatch(ctx context.Context, ws []Write) ([]Outcome, error) {
	outcomes := make([]Outcome, len(ws))
	valid := make([]Write, 0, len(ws))
	index := make([]int, 0, len(ws)) // valid[k] is ws[index[k]]
	var skipped []error
	latest := versionOf(s.cfg.Now().Add(maxFutureSkew))
	for i, w := range ws {
		s.complete(&w)
		s.sanitize(ctx, &w)
		err := w.validateKeys()
		if err == nil && w.Version > latest {
			err = fmt.Errorf("%w: version %d is more than %v in the future", ErrInvalid, w.Version, maxFutureSkew)
		}
		if err != nil {
			skipped = append(skipped, &WriteError{Index: i, Err: err})
			continue
		}
		w.normalized = w.Profile.Metadata
		valid = append(valid, w)
		index = append(index, i)
	}
	users, applied, err := s.store.UpsertBatch(ctx, valid)
	if err != nil && applied == nil {
		return nil, err
	}
	for k, o := range applied {
		outcomes[index[k]] = o
		s.changed(ctx, o, users[k])
	}
	if err != nil {
		// Writes the store skipped: name them by their place in ws.
		errs := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			var we *WriteError
			if errors.As(e, &we) && we.Index >= 0 && we.Index < len(index) {
				e = &WriteError{Index: index[we.Index], Err: we.Err}
			}
			skipped = append(skipped, e)
		}
		// By place in ws; any other error last.
		slices.SortStableFunc(skipped, func(a, b error) int {
			var x, y *WriteError
			xok, yok := errors.As(a, &x), errors.As(b, &y)
			switch {
			case xok && yok:
				return x.Index - y.Index
			case xok:
				return -1
			case yok:
				return 1
			}
			return 0
		})
	}
	return outcomes, errors.Join(skipped...)
}

// Delete tombstones the user TokenIdentifier(issuer, subject), even one
// never seen, so that no later write brings them back. It returns the
// tombstone and Deleted, or Stale if it was already deleted.
func (s *Syncer) Delete(ctx context.Context, issuer, subject string) (User, Outcome, error) {
	w := Write{Issuer: issuer, Subject: subject}
	s.complete(&w)
	if err := w.validateKeys(); err != nil {
		return User{}, Stale, err
	}
	u, outcome, err := s.store.Delete(ctx, w)
	if err != nil {
		return u, outcome, err
	}
	s.changed(ctx, outcome, u)
	return u, outcome, nil
}

// maxFutureSkew is how far in the future of the Syncer's clock a version
// may be.
const maxFutureSkew = 10 * time.Minute

// emptyProfile is the zero Profile that sanitize copies dropped fields
// from; never written.
var emptyProfile Profile

// sanitize drops from w the profile fields that no store can hold, and
// logs their names (never their values).
func (s *Syncer) sanitize(ctx context.Context, w *Write) {
	var dropped []string
	for _, pf := range &profileFields {
		bad := pf.storable != nil && !pf.storable(&w.Profile)
		if pf.field == FieldMetadata {
			m, err := metadata.Normalize(w.Profile.Metadata)
			bad, w.Profile.Metadata = err != nil, m
		}
		if bad {
			// Not carried, and not a default of a new user either.
			pf.copy(&w.Profile, &emptyProfile)
			if w.Fields&pf.field != 0 {
				w.Fields &^= pf.field
				dropped = append(dropped, pf.name)
			}
		}
	}
	if len(dropped) > 0 {
		s.log.WarnContext(ctx, "usersync: dropped profile fields that no store can hold; applying the rest", "fields", dropped)
	}
}

// complete fills in what the Syncer owns of a write.
func (s *Syncer) complete(w *Write) {
	w.Issuer = canonicalIssuer(w.Issuer)
	if w.TokenIdentifier == "" {
		w.TokenIdentifier = TokenIdentifier(w.Issuer, w.Subject)
	}
	if w.ID == "" {
		w.ID = s.cfg.NewID()
	}
	if w.At.IsZero() {
		w.At = s.cfg.Now()
	}
}

func (s *Syncer) changed(ctx context.Context, o Outcome, u User) {
	if o == Stale {
		return
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "usersync: user changed", "outcome", o.String(), "user_id", u.ID)
	}
	if s.cfg.OnChange != nil {
		if u.Metadata != nil {
			u.Metadata = append([]byte(nil), u.Metadata...)
		}
		s.cfg.OnChange(ctx, Change{Outcome: o, UserID: u.ID, ExternalID: u.ExternalID, At: u.UpdatedAt, User: u})
	}
}
