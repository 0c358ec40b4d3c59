package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
	"github.com/usersync/usersync/sessions"
)

// app is the chat: messages with authors, on top of usersync, in a global
// room and in a room per organization.
type app struct {
	store    chatStore
	instance *clerk.Provider
	syncer   *usersync.Syncer
	verifier *jwtverify.Verifier
	webhook  http.Handler
	msgs     messages
	log      *slog.Logger
	obs      *observability
	dev      *devIssuer // nil outside dev mode
	clerkKey string     // publishable key, Clerk mode
	issuer   string

	members *orgs.Syncer // the organizations and memberships, in store
	// ended is the replica's view of the ended sessions of every replica:
	// their tokens are refused.
	ended *sessions.Set
	// newInstance makes the Clerk instance, its webhooks applying the
	// organization events through members and the session ones through
	// ended: wire makes one per store.
	newInstance func(members *orgs.Syncer, ended *sessions.Set) (*clerk.Provider, error)

	feed       *feed.Runner          // the change feed's consumers
	feedLease  time.Duration         // their lease's TTL; 0: feed's default (tests shorten it)
	replica    string                // USERSYNC_REPLICA: the leases' holder; "": one unique to the process
	users      *clerk.UserList       // the Backend API's, with CLERK_SECRET_KEY; else nil
	reconciler *reconcile.Reconciler // over users, when set
	every      time.Duration         // between reconciles; 0: only at start
	// The Backend API's organizations, with CLERK_SECRET_KEY, and their
	// reconciler over members; else nil.
	orgList       *clerk.OrganizationList
	orgReconciler *reconcile.OrganizationReconciler
}

// chatStore is what the chat keeps its users in: a usersync.Store with
// the change feed and the leases, the organizations and memberships, and
// the ended sessions (memstore and sqlstore all are).
type chatStore interface {
	usersync.Store
	feed.Store
	orgs.Store
	sessions.Store
}

const maxMessage = 2000 // characters

// routes returns the app's handler.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /clerk-users-webhook", a.webhook)
	// Acting as the user: RequireUser stores them from the token if the
	// webhook has not arrived yet, and refuses deleted users.
	user := a.syncer.RequireUser
	mux.Handle("POST /api/users/store", user(http.HandlerFunc(a.storeUser)))
	mux.Handle("POST /api/messages", user(http.HandlerFunc(a.send)))
	// Reading: the identity is enough, and deleted users still read.
	identity := a.syncer.RequireIdentity
	mux.Handle("GET /api/users/me", identity(http.HandlerFunc(a.me)))
	mux.Handle("GET /api/messages", identity(http.HandlerFunc(a.list)))
	mux.Handle("GET /api/messages/sent-count", identity(http.HandlerFunc(a.sentCount)))
	// The organizations' rooms: the user's organizations, and a room each
	// for its live members only. The store decides who is a member, not
	// the token's active organization.
	mux.Handle("GET /api/orgs", user(http.HandlerFunc(a.listOrgs)))
	member := a.members.RequireMember(func(r *http.Request) string { return r.PathValue("orgId") })
	mux.Handle("GET /api/orgs/{orgId}/messages", user(member(http.HandlerFunc(a.listRoom))))
	mux.Handle("POST /api/orgs/{orgId}/messages", user(member(http.HandlerFunc(a.sendToRoom))))
	mux.HandleFunc("GET /api/config", a.config)
	if a.dev != nil {
		mux.HandleFunc("POST /dev/token", a.dev.serveToken)
	}
	mux.HandleFunc("GET /{$}", serveIndex)
	// Operations: usersync's metrics, for Prometheus to scrape.
	mux.Handle("GET /metrics", a.obs.metrics)
	return a.obs.traced(mux)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// errorJSON is the syncer's error handler: every error of the
// middlewares as {"error": "..."}, with the headers they set (the 401's
// WWW-Authenticate, the 503's Retry-After).
func errorJSON(w http.ResponseWriter, r *http.Request, status int, err error) {
	msg := strings.ToLower(http.StatusText(status))
	switch {
	case errors.Is(err, usersync.ErrDeleted):
		msg = "user was deleted"
	case errors.Is(err, usersync.ErrKeysUnavailable):
		msg = "sign-in keys unavailable: retry shortly"
	case errors.Is(err, usersync.ErrInvalid):
		msg = "the token's claims cannot be stored"
	}
	writeError(w, status, msg)
}

// orgErrorJSON is the organizations' error handler (RequireMember's
// refusals), as errorJSON: 403 and 404 say what they mean to the page.
func orgErrorJSON(w http.ResponseWriter, r *http.Request, status int, err error) {
	switch status {
	case http.StatusForbidden:
		writeError(w, status, "not a member")
	case http.StatusNotFound:
		writeError(w, status, "organization not found")
	default:
		errorJSON(w, r, status, err)
	}
}

// storeUser is the page's store mutation: it refreshes the stored claims
// from the token, and is idempotent.
func (a *app) storeUser(w http.ResponseWriter, r *http.Request) {
	u, err := a.syncer.StoreCurrentUser(r.Context())
	switch {
	case errors.Is(err, usersync.ErrDeleted):
		writeError(w, http.StatusForbidden, "user was deleted")
	case errors.Is(err, usersync.ErrInvalid):
		writeError(w, http.StatusBadRequest, "the token's claims cannot be stored")
	case err != nil:
		a.fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"id": u.ID})
	}
}

// me is a pure read: 404 until the user row exists, and after it is
// deleted.
func (a *app) me(w http.ResponseWriter, r *http.Request) {
	u, err := a.syncer.CurrentUser(r.Context())
	switch {
	case errors.Is(err, usersync.ErrNotFound): // not stored yet, or deleted
		writeError(w, http.StatusNotFound, "user not stored")
	case err != nil:
		a.fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, u)
	}
}

func (a *app) send(w http.ResponseWriter, r *http.Request) {
	a.sendWith(w, r, a.msgs.add)
}

// sendToRoom sends to the room of the organization RequireMember admitted
// the user to.
func (a *app) sendToRoom(w http.ResponseWriter, r *http.Request) {
	m, _ := orgs.MemberFromContext(r.Context())
	a.sendWith(w, r, func(ctx context.Context, userID, body string, at time.Time) (int64, error) {
		return a.msgs.addToRoom(ctx, m.Organization.ID, userID, body, at)
	})
}

// sendWith stores the request's message with add, as the user of the
// request.
func (a *app) sendWith(w http.ResponseWriter, r *http.Request, add func(ctx context.Context, userID, body string, at time.Time) (int64, error)) {
	var in struct {
		Body string `json:"body"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON {\"body\": \"...\"}")
		return
	}
	body := strings.TrimSpace(in.Body)
	if body == "" || utf8.RuneCountInString(body) > maxMessage {
		writeError(w, http.StatusBadRequest, "message must have 1 to 2000 characters")
		return
	}
	u, _ := usersync.UserFromContext(r.Context())
	id, err := add(r.Context(), u.ID, body, time.Now())
	if errors.Is(err, errAuthorDeleted) { // deleted since the request began
		writeError(w, http.StatusNotFound, "user not stored")
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int64{"id": id})
}

type messageJSON struct {
	ID        int64     `json:"id"`
	Body      string    `json:"body"`
	Author    string    `json:"author"`
	UserID    string    `json:"userId"`
	CreatedAt time.Time `json:"createdAt"`
}

// list returns messages oldest first with their authors, resolved with one
// GetMany for the whole page.
func (a *app) list(w http.ResponseWriter, r *http.Request) {
	a.listWith(w, r, a.msgs.list)
}

// listRoom lists the room of the organization RequireMember admitted the
// user to, as list lists the global one.
func (a *app) listRoom(w http.ResponseWriter, r *http.Request) {
	m, _ := orgs.MemberFromContext(r.Context())
	a.listWith(w, r, func(ctx context.Context, after int64, limit int) ([]message, error) {
		return a.msgs.listRoom(ctx, m.Organization.ID, after, limit)
	})
}

// listWith answers the page of messages list finds for the request's
// after and limit, with their authors.
func (a *app) listWith(w http.ResponseWriter, r *http.Request, list func(ctx context.Context, after int64, limit int) ([]message, error)) {
	limit, after := 100, int64(0)
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, "limit must be 1 to 500")
			return
		}
		limit = n
	}
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after must be a message id")
			return
		}
		after = n
	}
	msgs, err := list(r.Context(), after, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UserID
	}
	authors, err := a.store.GetMany(r.Context(), ids)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]messageJSON, len(msgs))
	for i, m := range msgs {
		author := "deleted user"
		if u, ok := authors[m.UserID]; ok {
			author = u.Name
		}
		out[i] = messageJSON{ID: m.ID, Body: m.Body, Author: author, UserID: m.UserID, CreatedAt: m.CreatedAt}
	}
	writeJSON(w, http.StatusOK, out)
}

// orgJSON is one of the user's organizations, with the user's role in it.
type orgJSON struct {
	ID   string `json:"id"` // Clerk's "org_…" ID
	Name string `json:"name"`
	Slug string `json:"slug"`
	Role string `json:"role"` // "org:admin", "org:member", …
}

// orgsPage is how many memberships listOrgs reads at a time.
const orgsPage = 100

// listOrgs answers the user's live organizations, by ID: every one, read
// from the store a page at a time.
func (a *app) listOrgs(w http.ResponseWriter, r *http.Request) {
	u, _ := usersync.UserFromContext(r.Context())
	out := []orgJSON{}
	for after := ""; ; {
		page, err := a.members.Store().UserMemberships(r.Context(), u.Issuer, u.Subject, after, orgsPage)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		for _, m := range page {
			out = append(out, orgJSON{ID: m.Organization.ID, Name: m.Organization.Name, Slug: m.Organization.Slug, Role: m.Membership.Role})
		}
		if len(page) < orgsPage {
			break
		}
		after = page[len(page)-1].Organization.ID
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *app) sentCount(w http.ResponseWriter, r *http.Request) {
	u, err := a.syncer.CurrentUser(r.Context())
	if errors.Is(err, usersync.ErrNotFound) { // not stored yet, or deleted: sent nothing
		writeJSON(w, http.StatusOK, map[string]int{"count": 0})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.msgs.countBy(r.Context(), u.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"count": n})
}

// config tells the page which sign-in to show.
func (a *app) config(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"dev": a.dev != nil, "issuer": a.issuer, "clerkPublishableKey": a.clerkKey})
}

func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	a.log.ErrorContext(r.Context(), "chat: request failed", "path", r.URL.Path, "error", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}
