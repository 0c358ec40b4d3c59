package usersync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync/internal/metadata"
)

// Sentinel errors. Every error usersync returns for one of these reasons
// wraps the matching sentinel, so callers test with errors.Is.
var (
	// ErrNotFound reports that no live user matches: the ID or token
	// identifier was never stored, or its user was deleted.
	ErrNotFound = errors.New("usersync: user not found")

	// ErrDeleted reports that the user was deleted. Deletion is final: the
	// tombstone refuses every later write of its token identifier, and a
	// lookup of it fails with ErrDeleted. ErrDeleted wraps ErrNotFound, so
	// code that only asks "is there a live user?" needs no second check.
	ErrDeleted error = &deletedError{}

	// ErrInvalid reports a write, lookup or configuration that is
	// malformed, such as an empty token identifier or a version of 0 on a
	// write that carries fields.
	ErrInvalid = errors.New("usersync: invalid argument")
)

type deletedError struct{}

func (*deletedError) Error() string { return "usersync: user was deleted" }
func (*deletedError) Unwrap() error { return ErrNotFound }

// Store keeps users. Implementations live in their own packages (memstore,
// sqlstore); usersynctest.TestStore checks any of them against this
// contract.
//
// A store may do more, each in an interface of the package that uses it:
// a change feed (feed.Store, for the feed package's consumers) and leases
// (lease.Store, for the reconciler and the consumers). usersynctest.TestStore
// checks those rules too for a store that has them.
//
// Every method takes a context first, honours its cancellation, and is
// atomic on its own: concurrent calls from any number of goroutines or
// processes sharing the store behave as if run one at a time. Returned
// users are copies: changing them never changes stored state. Keys (IDs and
// token identifiers) compare byte for byte. Errors wrap the package's
// sentinels where one applies and the underlying cause otherwise.
type Store interface {
	// Get returns the live user with the given ID. It fails with an error
	// wrapping ErrDeleted for a tombstone and ErrNotFound for an ID never
	// stored, including one that no write could store (invalid UTF-8, a
	// NUL character).
	Get(ctx context.Context, id string) (User, error)

	// GetByTokenIdentifier returns the live user with the given token
	// identifier, failing as Get does.
	GetByTokenIdentifier(ctx context.Context, tokenIdentifier string) (User, error)

	// GetByExternalID returns the live user of issuer whose ExternalID is
	// externalID: the link from a row of an earlier system to the user. If
	// several have it (a provider need not keep them unique), it returns the
	// most recently updated. If only tombstones have it (a tombstone keeps
	// its external ID), it fails with ErrDeleted. An empty externalID is
	// never found.
	GetByExternalID(ctx context.Context, issuer, externalID string) (User, error)

	// GetMany returns the live users among ids, keyed by ID, in as few
	// round trips as it can. Unknown, malformed and deleted IDs are absent
	// from the map; duplicates are allowed.
	GetMany(ctx context.Context, ids []string) (map[string]User, error)

	// List returns up to limit live users with an ID greater than after,
	// ordered by ID (byte order); after == "" starts at the beginning. A
	// limit below 1, or an after that no write could store, fails with
	// ErrInvalid. Pass the last ID of a page as the next after.
	List(ctx context.Context, after string, limit int) ([]User, error)

	// Count returns the number of live users.
	Count(ctx context.Context) (int, error)

	// Upsert applies w (checked with Write.Validate, which fails with
	// ErrInvalid) to the user with w.TokenIdentifier.
	//
	// Each Profile field keeps the version it was last written at (0 if
	// never). If there is no such user, Upsert stores one with ID w.ID,
	// every Profile value of w, the fields in w.Fields at w.Version and the
	// others at 0, CreatedAt = UpdatedAt = w.At, and reports Created. If
	// there is one, each field in w.Fields replaces the stored field only
	// where w.Version is newer than that field's version; if any did,
	// UpdatedAt becomes w.At and Upsert reports Updated, else it reports
	// Stale and changes nothing. User.Version is always the newest version
	// of any field. Identity fields (ID, Issuer, Subject, CreatedAt) never
	// change. The user is returned as stored after the write.
	//
	// If the token identifier has a tombstone, Upsert changes nothing and
	// fails with ErrDeleted. If w.ID belongs to another user, it changes
	// nothing and fails with ErrInvalid.
	//
	// Concurrent first writes of one token identifier store exactly one
	// user, and every caller gets its ID.
	Upsert(ctx context.Context, w Write) (User, Outcome, error)

	// UpsertBatch applies ws as Upsert applies each, in order, and
	// atomically: all of them, or none if it fails. Every write must pass
	// Validate, or the batch fails with ErrInvalid and changes nothing. A
	// write aimed at a tombstone changes nothing and reports Stale. It
	// returns each write's outcome and, for Created and Updated, the user as
	// stored after it (the zero User for Stale). It is for imports: one
	// transaction, and as few round trips as the store can.
	//
	// One exception to all or none: a write with a value the database
	// refuses though Validate takes it is skipped (Stale, the zero User)
	// and the others applied; the error returned beside the outcomes then
	// joins a *WriteError per skipped write. Outcomes come back with such
	// an error only.
	UpsertBatch(ctx context.Context, ws []Write) ([]User, []Outcome, error)

	// Delete turns the user with w.TokenIdentifier into a tombstone: ID,
	// token identifier, Issuer, Subject, CreatedAt and ExternalID (the
	// app's own key of the person, not personal data) stay, the rest of
	// the Profile is cleared, UpdatedAt and DeletedAt become w.At, and
	// Deleted is reported.
	// A token identifier never seen gets a tombstone with ID w.ID, so that
	// a late write cannot create it. Deleting a tombstone again changes
	// nothing and reports Stale. The tombstone is returned either way. Only
	// the identity fields (Issuer, Subject, TokenIdentifier, ID) and At of
	// w are used. A store that keeps organizations (orgs.Store) ends the
	// user's memberships in the same transaction.
	Delete(ctx context.Context, w Write) (User, Outcome, error)
}

// Write is one versioned observation of a user: what Syncer.Upsert takes
// and, completed, what a Store applies.
type Write struct {
	// Issuer and Subject name the user; Issuer has no trailing "/".
	Issuer  string
	Subject string
	// TokenIdentifier is TokenIdentifier(Issuer, Subject). The Syncer fills
	// it in.
	TokenIdentifier string
	// ID is the ID the user gets if this write creates them; it is ignored
	// when the user exists. The Syncer fills it in from its generator.
	ID string
	// Version orders this write against others for the same user. A write
	// that carries fields needs a version above 0.
	Version Version
	// Fields names the Profile fields this write carries. Only those can
	// change a stored user. The other Profile values are defaults, used only
	// when the write creates the user.
	Fields  Fields
	Profile Profile
	// At is the local time of the write, for CreatedAt, UpdatedAt and
	// DeletedAt. The Syncer fills it in from its clock.
	At time.Time

	// normalized is the Profile.Metadata that the Syncer normalised on the
	// write's way to the store: Validate does not scan that slice again.
	normalized json.RawMessage
}

// Size limits of a write, the same for every store (SQL key columns have
// fixed widths). A longer value is bad input: ErrInvalid.
const (
	maxIDLen              = 128
	maxTokenIdentifierLen = 512
	maxSubjectLen         = 255
	maxFieldLen           = 16 << 10 // each Profile text
	maxExternalIDLen      = 255      // an indexed column
)

// Validate reports whether w is well formed, failing with an error that
// wraps ErrInvalid if not: At set; ID, Issuer and Subject present, Issuer
// without a trailing "/", TokenIdentifier equal to TokenIdentifier(Issuer,
// Subject); at most 128 bytes of ID, 255 of Subject and 512 of
// TokenIdentifier; a version from 0 to the year 9999, above 0 if w carries
// fields; known fields only; every text valid UTF-8 without NUL characters
// and at most 16 KiB (ExternalID 255 bytes); LastSignInAt zero or from the
// epoch to the year 9999; metadata JSON that every store can hold (at most 64
// KiB and 31 levels deep, finite numbers, no NUL). It rewrites the metadata
// in the form every store takes (invalid UTF-8 and lone surrogate escapes
// become U+FFFD), so stores call it first and store what it leaves. The
// metadata of a write the Syncer hands to its store was normalised on the
// way: Validate does not scan that same slice again.
func (w *Write) Validate() error {
	if err := w.validateKeys(); err != nil {
		return err
	}
	p := &w.Profile
	for _, pf := range &profileFields {
		if pf.storable != nil && !pf.storable(p) {
			return fmt.Errorf("%w: profile field %s cannot be stored (too long, not UTF-8, a NUL character, a time out of range)", ErrInvalid, pf.name)
		}
	}
	if m := p.Metadata; len(m) > 0 && len(m) == len(w.normalized) && &m[0] == &w.normalized[0] {
		return nil
	}
	m, err := metadata.Normalize(p.Metadata)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	p.Metadata = m
	return nil
}

// validateKeys is Validate without the Profile's checks: what is left to
// check of a write whose profile Syncer.sanitize has made storable.
func (w *Write) validateKeys() error {
	switch {
	case w.ID == "" || w.Issuer == "" || w.Subject == "":
		return fmt.Errorf("%w: empty ID, issuer or subject", ErrInvalid)
	case w.At.IsZero():
		return fmt.Errorf("%w: no time (At) of the write", ErrInvalid)
	case !isTokenIdentifier(w.TokenIdentifier, w.Issuer, w.Subject):
		return fmt.Errorf("%w: token identifier is not TokenIdentifier(issuer, subject)", ErrInvalid)
	case len(w.ID) > maxIDLen || len(w.TokenIdentifier) > maxTokenIdentifierLen || len(w.Subject) > maxSubjectLen:
		return fmt.Errorf("%w: ID, token identifier or subject too long", ErrInvalid)
	case !cleanText(w.ID) || !cleanText(w.TokenIdentifier):
		return fmt.Errorf("%w: NUL character or invalid UTF-8 in the ID or token identifier", ErrInvalid)
	case w.Version < 0 || w.Version > maxVersion:
		return fmt.Errorf("%w: version out of range", ErrInvalid)
	case w.Fields != 0 && w.Version == 0:
		return fmt.Errorf("%w: a write that carries fields needs a version above 0", ErrInvalid)
	case w.Fields&^AllFields != 0:
		return fmt.Errorf("%w: unknown fields %#x", ErrInvalid, w.Fields&^AllFields)
	}
	return nil
}

// isTokenIdentifier reports whether ti is TokenIdentifier(issuer,
// subject) for a canonical issuer, without building it.
func isTokenIdentifier(ti, issuer, subject string) bool {
	return !strings.HasSuffix(issuer, "/") && len(ti) == len(issuer)+1+len(subject) &&
		ti[:len(issuer)] == issuer && ti[len(issuer)] == '|' && ti[len(issuer)+1:] == subject
}

// cleanText reports whether s is valid UTF-8 without NUL characters: text
// every store can hold.
func cleanText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// Outcome says what a write did.
type Outcome uint8

const (
	// Stale means the write changed nothing: no field it carries was newer
	// than the stored one, or the user was already deleted.
	Stale Outcome = iota
	// Created means the write stored a new user.
	Created
	// Updated means the write changed at least one field.
	Updated
	// Deleted means the write turned a user (or an unseen token
	// identifier) into a tombstone.
	Deleted
)

// String returns the outcome's name in lower case.
func (o Outcome) String() string {
	switch o {
	case Stale:
		return "stale"
	case Created:
		return "created"
	case Updated:
		return "updated"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// WriteError is the error of one write of a batch that was skipped while
// the others were applied (Syncer.UpsertBatch, Store.UpsertBatch). Its
// text names the write by its place in the batch, never its values.
type WriteError struct {
	// Index is the write's place in the batch.
	Index int
	// Err says why, wrapping ErrInvalid.
	Err error
}

// Error implements error.
func (e *WriteError) Error() string { return fmt.Sprintf("write %d: %v", e.Index, e.Err) }

// Unwrap returns Err.
func (e *WriteError) Unwrap() error { return e.Err }
