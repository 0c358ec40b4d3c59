package clerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sessions"
)

// Session is Clerk's SessionJSON: the data of the session.* events (which
// may also embed the user, not decoded here) and the Backend API's
// GET /sessions/{id}. Optional fields are pointers or zero; unknown fields
// are ignored. It is for the apps that decode the events themselves
// (usersync.WebhookConfig.OnEvent, Event.Raw): the Provider reads only the
// id, user_id and updated_at of a session ending, so that a change in
// another field's type never fails one.
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
// it already (a redelivery).
//
// It reads as little as it can, so that a change in a field it does not
// need never loses an ending (Svix gives up on a delivery answered 400):
// data.id, required, a non-empty string; data.user_id, the ending's
// Subject, if a string; data.updated_at, if a number of ms. Every other
// field of data, and of the envelope but its timestamp, is not looked at
// (the typed Session is for the apps that decode the event themselves).
// The ending is at the later of data.updated_at and the envelope's
// timestamp, as either may lag the ending and keeping an ending longer is
// harmless; at neither, now. An event without a data object with an id
// fails with an error wrapping usersync.ErrInvalid.
func (p *Provider) decodeSessionEvent(eventType string, body []byte) (usersync.Event, error) {
	out := usersync.Event{Type: eventType}
	var ev struct {
		// In ms in the docs, in s in some examples (eventTime tells
		// them apart); not required to be well-formed.
		Timestamp json.RawMessage `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return out, fmt.Errorf("%w: clerk: malformed %s event: %w", usersync.ErrInvalid, eventType, jsonError(err))
	}
	// By exact name: encoding/json would also fill a field from a key
	// that differs in case only ("ID"), of any type.
	var data map[string]json.RawMessage
	if json.Unmarshal(ev.Data, &data) != nil || data == nil {
		return out, fmt.Errorf("%w: clerk: %s event whose data is not an object", usersync.ErrInvalid, eventType)
	}
	var id string
	if json.Unmarshal(data["id"], &id) != nil || id == "" {
		return out, fmt.Errorf("%w: clerk: session event without data.id", usersync.ErrInvalid)
	}
	var subject string
	if json.Unmarshal(data["user_id"], &subject) != nil {
		subject = "" // informational only: the ending is the session's
	}
	ending := sessions.Ending{Issuer: p.cfg.Issuer, SessionID: id, Subject: subject, EndedAt: later(dataTime(data["updated_at"]), eventTime(ev.Timestamp))}
	// A zero EndedAt is now to Set.End.
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

// dataTime is a time field of an event's data, such as updated_at: a
// JSON number of ms since the epoch. It is the zero time if the field is
// absent, of another type (null, text, ...), or not after the epoch.
func dataTime(raw json.RawMessage) time.Time {
	var ms float64
	if json.Unmarshal(raw, &ms) != nil || ms <= 0 || ms >= math.MaxInt64 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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
