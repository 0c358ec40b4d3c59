package clerkfake

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/usersync/usersync/clerk"
)

// session is a session as the instance keeps it.
type session struct {
	id, userID, clientID string
	status               string
	org                  string // the last active organization, or ""
	created, updated     int64  // ms since the epoch
}

// How long Clerk keeps a session, by default: it expires a week after it
// was created, and is abandoned after a month without activity.
const (
	sessionLifetime = 7 * 24 * time.Hour
	sessionAbandon  = 30 * 24 * time.Hour
)

// sessionStatuses are the states SetSessionStatus takes, as Clerk names
// them.
var sessionStatuses = map[string]bool{
	"active": true, "pending": true, "ended": true, "removed": true, "revoked": true,
	"expired": true, "abandoned": true, "replaced": true,
}

// clerk returns s as Clerk's session object, the Backend API's
// GET /v1/sessions/{id}.
func (s *session) clerk() clerk.Session {
	d := clerk.Session{
		Object: "session", ID: s.id, UserID: s.userID, ClientID: s.clientID, Status: s.status, Actor: json.RawMessage("null"),
		LastActiveAt: s.updated, ExpireAt: s.created + sessionLifetime.Milliseconds(), AbandonAt: s.created + sessionAbandon.Milliseconds(),
		CreatedAt: s.created, UpdatedAt: s.updated,
	}
	if s.org != "" {
		d.LastActiveOrganizationID = Str(s.org)
	}
	return d
}

// sessionJSON renders a session object as Clerk's API does: every field,
// nulls included. user, if not nil, is embedded as the session.* events
// embed it (null if the user is not listed).
func sessionJSON(d clerk.Session, user *json.RawMessage) []byte {
	v := struct {
		Object                   string           `json:"object"`
		ID                       string           `json:"id"`
		ClientID                 string           `json:"client_id"`
		UserID                   string           `json:"user_id"`
		Status                   string           `json:"status"`
		LastActiveOrganizationID *string          `json:"last_active_organization_id"`
		Actor                    json.RawMessage  `json:"actor"`
		LastActiveAt             int64            `json:"last_active_at"`
		ExpireAt                 int64            `json:"expire_at"`
		AbandonAt                int64            `json:"abandon_at"`
		CreatedAt                int64            `json:"created_at"`
		UpdatedAt                int64            `json:"updated_at"`
		User                     *json.RawMessage `json:"user,omitempty"`
	}{
		"session", d.ID, d.ClientID, d.UserID, d.Status, d.LastActiveOrganizationID, json.RawMessage("null"),
		d.LastActiveAt, d.ExpireAt, d.AbandonAt, d.CreatedAt, d.UpdatedAt, user,
	}
	if len(d.Actor) > 0 {
		v.Actor = d.Actor
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // cannot happen: every field marshals
	}
	return b
}

// SessionEvent returns the JSON body of a session.* event (session.created,
// session.ended, session.removed, session.revoked, ...) of s, at its
// UpdatedAt, with "user": null: for tests that send their own
// deliveries.
func SessionEvent(eventType string, s clerk.Session) []byte {
	null := json.RawMessage("null")
	return rawEvent(eventType, sessionJSON(s, &null), s.UpdatedAt)
}

// register records the session sid of the user sub, active, if the
// instance does not have it, with org as its last active organization if
// not "". It fails for a session of another user, or one that is not
// active: Clerk mints no token for it.
func (i *Instance) register(sid, sub, org string) error {
	if sid == "" || !validID(sid) {
		return errors.New("clerkfake: a session ID is letters, digits, _ and -")
	}
	now := i.now().UnixMilli()
	i.mu.Lock()
	defer i.mu.Unlock()
	s := i.sessions[sid]
	switch {
	case s == nil:
		if i.sessions == nil {
			i.sessions = map[string]*session{}
		}
		i.sessions[sid] = &session{id: sid, userID: sub, clientID: "client_" + rand.Text(), status: "active", org: org, created: now, updated: now}
		return nil
	case s.userID != sub:
		return fmt.Errorf("clerkfake: the session %.64q is another user's", sid)
	case s.status != "active":
		return fmt.Errorf("clerkfake: the session %.64q is %s: Clerk mints no token for it", sid, s.status)
	}
	if org != "" && org != s.org {
		s.org, s.updated = org, max(now, s.updated+1)
	}
	return nil
}

// SessionToken returns a session token of the user sub, as Token does,
// of the session sid: a second token of a session that Token or
// SessionToken made, or of a new session of that ID (letters, digits, _
// and -, such as "sess_a"), which the instance then holds active. It fails
// for a session of another user, or one that is no longer active.
// (Token(sub, map[string]any{"sid": sid}) is the same.)
func (i *Instance) SessionToken(sub, sid string, claims map[string]any) (string, error) {
	all := map[string]any{"sid": sid}
	for name, v := range claims {
		if name != "sid" {
			all[name] = v
		}
	}
	return i.Token(sub, all)
}

// Session returns the session sid as the Backend API serves it, and
// whether the instance has it.
func (i *Instance) Session(sid string) (clerk.Session, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	s, ok := i.sessions[sid]
	if !ok {
		return clerk.Session{}, false
	}
	return s.clerk(), true
}

// SetSessionStatus sets the status of the session sid ("active",
// "pending", "ended", "removed", "revoked", "expired", "abandoned" or
// "replaced") without sending a webhook: as a change whose webhook was
// missed, or that the app does not receive. It fails for a session the
// instance does not have, or another status.
func (i *Instance) SetSessionStatus(sid, status string) error {
	if !sessionStatuses[status] {
		return fmt.Errorf("clerkfake: %.32q is not a session status", status)
	}
	_, err := i.setStatus(sid, status)
	return err
}

// RemoveSession deletes the sessions with the given IDs, without sending
// a webhook, as Clerk forgets sessions: GET /v1/sessions/{id} then
// answers 404, and a token of one makes it anew. Unknown IDs are ignored.
func (i *Instance) RemoveSession(sids ...string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, sid := range sids {
		delete(i.sessions, sid)
	}
}

// setStatus sets the session's status, and its updated_at to now if that
// changes it, and returns it.
func (i *Instance) setStatus(sid, status string) (clerk.Session, error) {
	now := i.now().UnixMilli()
	i.mu.Lock()
	defer i.mu.Unlock()
	s, ok := i.sessions[sid]
	if !ok {
		return clerk.Session{}, fmt.Errorf("clerkfake: no session %.64q", sid)
	}
	if s.status != status {
		s.status, s.updated = status, max(now, s.updated+1)
	}
	return s.clerk(), nil
}

// EndSession ends the session sid as Clerk does, how being "ended" (the
// user signed out), "removed" (signed out and removed from its client) or
// "revoked" (by the app or an admin): its status becomes how, and the
// session.<how> event, with the session (and its user, if listed, as
// newer payloads embed it) as data, is delivered, signed, to
// Config.WebhookURL. It returns the status the webhook answered; without a
// webhook URL, 0 and nothing is sent. Ending a session again sends its
// event again, as a redelivery would (with another svix-id). It fails for
// a session the instance does not have.
func (i *Instance) EndSession(ctx context.Context, sid, how string) (int, error) {
	switch how {
	case "ended", "removed", "revoked":
	default:
		return 0, fmt.Errorf(`clerkfake: a session ends "ended", "removed" or "revoked", not %.32q`, how)
	}
	d, err := i.setStatus(sid, how)
	if err != nil {
		return 0, err
	}
	user := json.RawMessage("null")
	i.mu.Lock()
	if k, ok := i.find(d.UserID); ok {
		user = i.users[k].json
	}
	i.mu.Unlock()
	eventType := "session." + how
	return i.deliver(ctx, eventType, rawEvent(eventType, sessionJSON(d, &user), d.UpdatedAt))
}

// getSession serves GET /v1/sessions/{id}.
func (i *Instance) getSession(w http.ResponseWriter, sid string) {
	i.mu.Lock()
	s, ok := i.sessions[sid]
	var d clerk.Session
	if ok {
		d = s.clerk()
	}
	i.mu.Unlock()
	if !ok {
		clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
		return
	}
	writeJSON(w, sessionJSON(d, nil))
}

func isSessionEnding(eventType string) bool {
	return eventType == "session.ended" || eventType == "session.removed" || eventType == "session.revoked"
}

// sendSessionJSON serves the session events of POST /fake/send: obj is a
// Clerk session object, of which only the "id" counts.
func (i *Instance) sendSessionJSON(ctx context.Context, eventType string, obj json.RawMessage) (int, error) {
	var s clerk.Session
	if err := json.Unmarshal(obj, &s); err != nil || s.ID == "" {
		return 0, errors.New(`clerkfake: the session is not a Clerk session object with an "id"`)
	}
	return i.EndSession(ctx, s.ID, eventType[len("session."):])
}
