package clerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sessions"
)

// Session is Clerk's SessionJSON: the data of the session.* events (which
// may also embed the user, not decoded here) and the Backend API's
// GET /sessions/{id}. Optional fields are pointers or zero; unknown fields
// are ignored.
type Session struct {
	Object   string `json:"object,omitempty"` // "session"
	ID       string `json:"id"`               // "sess_…", the sid of its tokens
	UserID   string `json:"user_id"`          // the user's ID, the sub of its tokens
	ClientID string `json:"client_id,omitempty"`
	// Status is the session's state: "active", or "pending" (signed in,
	// with a task left), or one it never leaves: "ended" (signed out),
	// "removed" (signed out and removed from its client), "revoked"
	// (ended by the app or an admin), "expired", "abandoned", "replaced".
	Status                   string          `json:"status"`
	LastActiveOrganizationID *string         `json:"last_active_organization_id,omitempty"`
	Actor                    json.RawMessage `json:"actor,omitempty"`          // the impersonator, if any
	LastActiveAt             int64           `json:"last_active_at,omitempty"` // ms since the epoch
	ExpireAt                 int64           `json:"expire_at,omitempty"`      // ms since the epoch
	AbandonAt                int64           `json:"abandon_at,omitempty"`     // ms since the epoch
	CreatedAt                int64           `json:"created_at,omitempty"`     // ms since the epoch
	UpdatedAt                int64           `json:"updated_at,omitempty"`     // ms since the epoch
}

// The states of a session (Session.Status) that this package tells apart.
const (
	statusActive  = "active"
	statusPending = "pending"
)

// endedStatus reports whether a session in the state status has ended for
// good: it never becomes active again. A state this package does not know
// is not taken for an ending.
func endedStatus(status string) bool {
	switch status {
	case "ended", "removed", "revoked", "expired", "abandoned", "replaced":
		return true
	}
	return false
}

// The event types of a session's ending.
const (
	sessionEnded   = "session.ended"
	sessionRemoved = "session.removed"
	sessionRevoked = "session.revoked"
)

func isSessionEnding(t string) bool {
	return t == sessionEnded || t == sessionRemoved || t == sessionRevoked
}

// decodeSessionEvent decodes a session.ended, session.removed or
// session.revoked event into an event whose Apply records the ending in
// the configured sessions.Set: Outcome Deleted, or Stale if the Set held
// it already (a redelivery). A malformed event fails with an error
// wrapping usersync.ErrInvalid.
func (p *Provider) decodeSessionEvent(eventType string, body []byte) (usersync.Event, error) {
	out := usersync.Event{Type: eventType}
	var ev struct {
		// Not relied on (ms in the docs, s in some examples), nor
		// required to be well-formed: the fallback of data.updated_at.
		Timestamp json.RawMessage `json:"timestamp"`
		Data      *Session        `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return out, fmt.Errorf("%w: clerk: malformed %s event: %w", usersync.ErrInvalid, eventType, jsonError(err))
	}
	s := ev.Data
	if s == nil || s.ID == "" {
		return out, fmt.Errorf("%w: clerk: session event without data.id", usersync.ErrInvalid)
	}
	ending := sessions.Ending{Issuer: p.cfg.Issuer, SessionID: s.ID, Subject: s.UserID, EndedAt: millis(s.UpdatedAt)}
	if ending.EndedAt.IsZero() {
		ending.EndedAt = eventTime(ev.Timestamp) // zero if none: Set.End makes it now
	}
	set, issuer := p.cfg.Sessions, p.cfg.Issuer
	out.Apply = func(ctx context.Context) (usersync.Outcome, error) {
		outcome := usersync.Deleted
		if errors.Is(set.CheckSession(&usersync.Identity{Issuer: issuer, SessionID: ending.SessionID}), usersync.ErrSessionEnded) {
			outcome = usersync.Stale // ended already: a redelivery, or another replica's
		}
		// Recorded again all the same: the store ignores an ending it
		// has. (An ending the store refuses, such as an ID of over 255
		// bytes, fails with usersync.ErrInvalid: 400.)
		if err := set.End(ctx, ending); err != nil {
			return usersync.Stale, err
		}
		return outcome, nil
	}
	return out, nil
}

// eventTime is an envelope's timestamp: ms since the epoch, as Clerk's
// docs have it, or seconds, as some of its examples do; the zero time if
// it is neither.
func eventTime(raw json.RawMessage) time.Time {
	ts, err := strconv.ParseInt(string(raw), 10, 64)
	switch {
	case err != nil || ts <= 0:
		return time.Time{}
	case ts < 100_000_000_000: // before 1973 in ms, after 5138 in seconds: seconds
		return time.Unix(ts, 0)
	}
	return time.UnixMilli(ts)
}
