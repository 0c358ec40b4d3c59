package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
)

// app is the chat: the reference page's messages with authors, on top of
// usersync.
type app struct {
	syncer   *usersync.Syncer
	verifier *usersync.Verifier
	webhook  *usersync.WebhookHandler
	msgs     messages
	log      *slog.Logger
	dev      *devIssuer // nil outside dev mode
	clerkKey string     // publishable key, Clerk mode
	issuer   string
}

const maxMessage = 2000 // characters

// routes returns the app's handler.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /clerk-users-webhook", a.webhook)
	auth := a.verifier.RequireIdentity
	mux.Handle("POST /api/users/store", auth(http.HandlerFunc(a.storeUser)))
	mux.Handle("GET /api/users/me", auth(http.HandlerFunc(a.me)))
	mux.Handle("POST /api/messages", auth(http.HandlerFunc(a.send)))
	mux.Handle("GET /api/messages", auth(http.HandlerFunc(a.list)))
	mux.Handle("GET /api/messages/sent-count", auth(http.HandlerFunc(a.sentCount)))
	mux.HandleFunc("GET /api/config", a.config)
	if a.dev != nil {
		mux.HandleFunc("GET /dev/jwks.json", a.dev.serveJWKS)
		mux.HandleFunc("POST /dev/token", a.dev.serveToken)
	}
	mux.HandleFunc("GET /{$}", serveIndex)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// storeUser is the reference page's store mutation: idempotent.
func (a *app) storeUser(w http.ResponseWriter, r *http.Request) {
	id, _ := usersync.FromContext(r.Context())
	u, err := a.syncer.StoreCurrentUser(r.Context(), id)
	if errors.Is(err, usersync.ErrDeleted) {
		writeError(w, http.StatusForbidden, "user was deleted")
		return
	}
	if errors.Is(err, usersync.ErrInvalid) {
		writeError(w, http.StatusBadRequest, "the token's claims cannot be stored")
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": u.ID})
}

// me is a pure read: 404 until the user row exists.
func (a *app) me(w http.ResponseWriter, r *http.Request) {
	if u, ok := a.currentUser(w, r, http.StatusNotFound, "user not stored yet"); ok {
		writeJSON(w, http.StatusOK, u)
	}
}

func (a *app) send(w http.ResponseWriter, r *http.Request) {
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
	u, ok := a.currentUser(w, r, http.StatusForbidden, "no stored user: call POST /api/users/store first")
	if !ok {
		return
	}
	id, err := a.msgs.add(r.Context(), u.ID, body, time.Now())
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
	msgs, err := a.msgs.list(r.Context(), after, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UserID
	}
	authors, err := a.syncer.GetMany(r.Context(), ids)
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

func (a *app) sentCount(w http.ResponseWriter, r *http.Request) {
	u, err := a.syncer.GetCurrentOrErr(r.Context())
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

// currentUser returns the stored user of the request's identity, or
// answers status with msg when there is none (not stored yet, or deleted)
// and 500 when the store fails.
func (a *app) currentUser(w http.ResponseWriter, r *http.Request, status int, msg string) (usersync.User, bool) {
	u, err := a.syncer.GetCurrentOrErr(r.Context())
	switch {
	case errors.Is(err, usersync.ErrNotFound):
		writeError(w, status, msg)
		return u, false
	case err != nil:
		a.fail(w, r, err)
		return u, false
	}
	return u, true
}

func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	a.log.ErrorContext(r.Context(), "chat: request failed", "path", r.URL.Path, "error", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}
