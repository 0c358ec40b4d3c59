package usersync

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
)

// RequireIdentity is the middleware for handlers that need only the
// verified identity, not the stored user: a request without a valid token
// is answered by Config.ErrorHandler (401, or 503 when the issuer's keys
// are unavailable); one with a valid token passes on with its Identity in
// the context (IdentityFromContext), and nothing is stored.
func (s *Syncer) RequireIdentity(next http.Handler) http.Handler {
	ex := s.extractor()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := identify(ex, s.cfg.Sessions, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(newContext(r.Context(), id)))
	})
}

// RequireUser is the middleware for handlers that act as the signed-in
// user. It finds the request's identity with Config.Extractor (a bearer
// token or a session cookie), resolves the stored user, creating them from
// the token when the provider's webhook has not arrived yet (then
// Config.CompleteUser, if set, may fill in what the token lacks), and
// passes the request on with the identity and the user in its context
// (IdentityFromContext, UserFromContext). Anything else is answered by
// Config.ErrorHandler: 401 without a valid token, 503 when the issuer's
// keys are unavailable, 403 for a deleted user, 500 when the store fails.
func (s *Syncer) RequireUser(next http.Handler) http.Handler {
	return s.userMiddleware(next, true)
}

// LoadUser is RequireUser for pages that also work signed out: a request
// without a token passes on with neither identity nor user, and one of a
// deleted user passes on with its identity but no user. A credential the
// extractor reports as no token (jwtverify: a session cookie that cannot
// be verified, as Clerk's expires every minute, or whose session ended)
// counts as signed out too; an Authorization header that cannot be
// verified, or whose session ended (Config.Sessions), is still refused, so
// that an API client learns its token is bad.
func (s *Syncer) LoadUser(next http.Handler) http.Handler {
	return s.userMiddleware(next, false)
}

func (s *Syncer) userMiddleware(next http.Handler, required bool) http.Handler {
	ex := s.extractor()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := identify(ex, s.cfg.Sessions, r)
		switch {
		case err != nil && !required && errors.Is(err, ErrNoToken):
			next.ServeHTTP(w, r) // signed out
			return
		case err != nil:
			s.fail(w, r, err)
			return
		}
		ctx := r.Context()
		u, err := s.resolve(ctx, id)
		switch {
		case err == nil:
		case !required && errors.Is(err, ErrDeleted):
			if s.log.Enabled(ctx, slog.LevelDebug) {
				s.log.DebugContext(ctx, "usersync: request of a deleted user passes on without a user")
			}
		default:
			s.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(&requestUser{Context: ctx, id: id, user: u, hasUser: err == nil}))
	})
}

// extractor returns Config.Extractor, or panics: a wiring mistake, like
// mux.Handle with a nil handler, fails at start, not on every request.
func (s *Syncer) extractor() Extractor {
	if s.cfg.Extractor == nil {
		panic("usersync: RequireIdentity, RequireUser and LoadUser need Config.Extractor")
	}
	return s.cfg.Extractor
}

// identify runs the extractor and the session check: an identity, or an
// error.
func identify(ex Extractor, sessions SessionChecker, r *http.Request) (*Identity, error) {
	id, err := ex.Identify(r)
	switch {
	case err != nil:
		return nil, err
	case id == nil:
		return nil, ErrNoToken
	case sessions != nil:
		if err := sessions.CheckSession(id); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// CurrentUser returns the stored user of the identity in ctx, without
// writing. It fails with ErrNoToken when ctx has no identity, ErrDeleted
// when the user was deleted, and ErrNotFound when they are not stored yet.
// Behind RequireUser, UserFromContext gives the user without a store read.
func (s *Syncer) CurrentUser(ctx context.Context) (User, error) {
	id, ok := IdentityFromContext(ctx)
	if !ok {
		return User{}, ErrNoToken
	}
	return s.store.GetByTokenIdentifier(ctx, id.TokenIdentifier)
}

// StoreCurrentUser stores the user of the identity in ctx from its token's
// claims: it creates them, or refreshes the claims that changed since
// (ordered by the token's iat). A user whose token carries no name is
// created with Config.DefaultName, and passed to Config.CompleteUser if
// set. Claims the token lacks never wipe stored values. It fails with
// ErrNoToken when ctx has no identity, and with ErrDeleted for a deleted
// user whose token is still valid.
func (s *Syncer) StoreCurrentUser(ctx context.Context) (User, error) {
	id, ok := IdentityFromContext(ctx)
	if !ok {
		return User{}, ErrNoToken
	}
	return s.storeIdentity(ctx, id)
}

func (s *Syncer) storeIdentity(ctx context.Context, id *Identity) (User, error) {
	w := id.write(s.cfg.DefaultName)
	if w.Version <= 0 {
		// A token without iat and nbf cannot order its claims: they only
		// serve as the defaults of a new user.
		w.Version, w.Fields = 0, 0
	}
	u, outcome, err := s.Upsert(ctx, w)
	if err == nil && outcome == Created && s.cfg.CompleteUser != nil {
		if c := s.cfg.CompleteUser(ctx, u); c.ID == u.ID {
			u = c
		}
	}
	return u, err
}

// resolve returns the stored user of id, storing them from the token first
// if the webhook has not arrived yet.
func (s *Syncer) resolve(ctx context.Context, id *Identity) (User, error) {
	u, err := s.store.GetByTokenIdentifier(ctx, id.TokenIdentifier)
	if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrDeleted) {
		return s.storeIdentity(ctx, id)
	}
	return u, err
}

// statusOf maps an error of the middlewares to its HTTP status: the table
// of Config.ErrorHandler.
func statusOf(err error) int {
	var own interface{ HTTPStatus() int }
	switch {
	case errors.As(err, &own) && own.HTTPStatus() >= 400 && own.HTTPStatus() <= 599:
		return own.HTTPStatus()
	case errors.Is(err, ErrKeysUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrNoToken), errors.Is(err, ErrInvalidToken):
		return http.StatusUnauthorized
	case errors.Is(err, ErrDeleted):
		return http.StatusForbidden
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// quoteless drops what may not appear inside a quoted value of a
// WWW-Authenticate challenge (RFC 6750: no '"' or '\\').
var quoteless = strings.NewReplacer(`"`, "", `\`, "")

// retryAfter is the Retry-After of a 503 for unavailable keys: about the
// longest backoff of a failed key fetch (jwtverify's is 4 s).
const retryAfter = "5"

// fail answers a request the middlewares refuse: it sets the headers its
// status needs, logs the reason (never the token) and calls the error
// handler.
func (s *Syncer) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	ctx := r.Context()
	switch status {
	case http.StatusUnauthorized:
		challenge := `Bearer realm="` + s.cfg.Realm + `"`
		var d interface{ Description() string }
		if errors.As(err, &d) {
			desc := quoteless.Replace(d.Description())
			challenge += `, error="invalid_token", error_description="` + desc + `"`
			if s.log.Enabled(ctx, slog.LevelDebug) {
				s.log.DebugContext(ctx, "usersync: token rejected", "reason", desc)
			}
		}
		w.Header().Set("WWW-Authenticate", challenge)
	case http.StatusServiceUnavailable:
		// The key fetcher logs the outage once; a line per request would
		// flood the log.
		w.Header().Set("Retry-After", retryAfter)
	case http.StatusInternalServerError:
		s.log.ErrorContext(ctx, "usersync: request failed", "path", r.URL.Path, "error", err)
	}
	if s.cfg.ErrorHandler != nil {
		s.cfg.ErrorHandler(w, r, status, err)
		return
	}
	http.Error(w, strings.ToLower(http.StatusText(status)), status)
}
