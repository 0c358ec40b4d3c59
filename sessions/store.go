package sessions

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
)

// Ending records that a session has ended, or, with no SessionID, that
// every session of a user has (the user was deleted).
type Ending struct {
	// Issuer is the issuer of the session's tokens, without a trailing
	// "/" (usersync.Identity.Issuer).
	Issuer string
	// SessionID is the session's ID, the sid of its tokens (Clerk's
	// "sess_…"); empty for the ending of every session of Subject.
	SessionID string
	// Subject is the user's subject (Clerk's user_id): required without a
	// SessionID; with one, it says whose session it was.
	Subject string
	// EndedAt is when the session ended, kept to the millisecond: the
	// ending is kept until EndedAt plus Config.Keep.
	EndedAt time.Time
	// RecordedAt and Seq are set by the store: when it recorded the
	// ending, by the store's own clock (the database server's), to the
	// millisecond, and a number above 0 that orders the endings recorded
	// in the same millisecond.
	RecordedAt time.Time
	Seq        int64
}

// Store keeps ended sessions for every replica of an app. memstore and
// sqlstore implement it; usersynctest.TestStore checks its rules for any
// store that does. Its methods follow usersync.Store's rules: each takes
// a context first and honours its cancellation, concurrent calls from any
// number of processes behave as if run one at a time, keys compare byte
// for byte, and errors wrap usersync.ErrInvalid where one applies.
//
// A store that implements Store also ends the sessions of a user it
// deletes: when its usersync.Store.Delete reports Deleted, it records, in
// the same transaction, the Ending{Issuer, Subject, EndedAt: the delete's
// time} of every session of the user (if that ending is valid: a user with
// a subject, an issuer of at most 255 bytes, deleted after the epoch).
type Store interface {
	// EndSessions records endings, in one transaction. An ending needs an
	// Issuer (without a trailing "/"), a SessionID or a Subject (each UTF-8
	// text of at most 255 bytes), and an EndedAt after the epoch, or the
	// call fails with usersync.ErrInvalid and records nothing
	// (Ending.Validate). An
	// ending already recorded (the same Issuer and SessionID, or, without
	// one, the same Issuer and Subject) is not recorded again, whatever
	// its EndedAt: recording is idempotent, and redeliveries cost no row.
	EndSessions(ctx context.Context, endings ...Ending) error

	// EndedSessions returns up to limit (1 to 1000) endings recorded
	// after the position (at, seq): those with a later RecordedAt, or the
	// same RecordedAt and a higher Seq, ordered by RecordedAt then Seq.
	// The zero position lists them all. An ending becomes visible when its
	// transaction commits, which may be after endings recorded later, but
	// (in any store that keeps its transactions short) within seconds of
	// its RecordedAt: a reader that asks again from a few seconds before
	// the latest RecordedAt it saw misses none (see Set).
	EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) ([]Ending, error)

	// PruneEndedSessions deletes the endings whose EndedAt is before
	// before, and returns how many it deleted.
	PruneEndedSessions(ctx context.Context, before time.Time) (int64, error)
}

// text reports whether s is valid UTF-8 without a NUL, as every store
// keeps text.
func text(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// maxMillis is the last millisecond of the year 9999.
const maxMillis = 253402300799999

// maxKey is the longest Issuer, SessionID or Subject an ending may have.
const maxKey = 255

// Validate reports whether e can be recorded: an error wrapping
// usersync.ErrInvalid if not.
func (e *Ending) Validate() error {
	switch {
	case e.Issuer == "":
		return fmt.Errorf("%w: an ending needs an Issuer", usersync.ErrInvalid)
	case e.SessionID == "" && e.Subject == "":
		return fmt.Errorf("%w: an ending needs a SessionID or a Subject", usersync.ErrInvalid)
	case len(e.Issuer) > maxKey || len(e.SessionID) > maxKey || len(e.Subject) > maxKey:
		return fmt.Errorf("%w: an ending's Issuer, SessionID and Subject are at most %d bytes", usersync.ErrInvalid, maxKey)
	case strings.HasSuffix(e.Issuer, "/"):
		return fmt.Errorf("%w: an ending's Issuer has no trailing \"/\" (tokens' iss is read without it)", usersync.ErrInvalid)
	case !text(e.Issuer) || !text(e.SessionID) || !text(e.Subject):
		return fmt.Errorf("%w: an ending's Issuer, SessionID and Subject are UTF-8 text without NUL", usersync.ErrInvalid)
	case e.EndedAt.UnixMilli() <= 0 || e.EndedAt.UnixMilli() > maxMillis:
		return fmt.Errorf("%w: an ending needs an EndedAt between the epoch and the year 9999", usersync.ErrInvalid)
	}
	return nil
}
