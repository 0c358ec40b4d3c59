package usersync

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
)

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
// created with Config.DefaultName. Claims the token lacks never wipe stored
// values. It fails with ErrNoToken when ctx has no identity, and with
// ErrDeleted for a deleted user whose token is still valid.
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
	u, _, err := s.Upsert(ctx, w)
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

// RequireUser is the middleware for handlers that act as the signed-in
// user. It verifies the request's bearer token (or session cookie) with
// Config.Verifier, resolves the stored user, creating them from the token
// when the provider's webhook has not arrived yet, and passes the request
// on with the identity and the user in its context (IdentityFromContext,
// UserFromContext). Anything else is answered by the verifier's error
// handler: 401 without a valid token, 503 when the issuer's keys are
// unavailable, 403 for a deleted user, 500 when the store fails.
func (s *Syncer) RequireUser(next http.Handler) http.Handler {
	return s.userMiddleware(next, true)
}

// LoadUser is RequireUser for pages that also work signed out: a request
// without a token passes on with neither identity nor user, and one of a
// deleted user passes on with its identity but no user. A session cookie
// that cannot be verified (Clerk's expires every minute) counts as signed
// out too; an Authorization header that cannot is still refused, so that
// an API client learns its token is bad.
func (s *Syncer) LoadUser(next http.Handler) http.Handler {
	return s.userMiddleware(next, false)
}

func (s *Syncer) userMiddleware(next http.Handler, required bool) http.Handler {
	v := s.cfg.Verifier
	if v == nil {
		// A wiring mistake, like mux.Handle with a nil handler: fail at
		// start, not on every request.
		panic("usersync: RequireUser and LoadUser need Config.Verifier")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, fromCookie, err := v.identify(r)
		switch {
		case err != nil && fromCookie && !required && !errors.Is(err, errCrossSite):
			next.ServeHTTP(w, r) // a stale session cookie: signed out
			return
		case err != nil:
			v.fail(w, r, err)
			return
		case id == nil && required:
			v.fail(w, r, ErrNoToken)
			return
		case id == nil:
			next.ServeHTTP(w, r)
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
			v.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(&requestUser{Context: ctx, id: id, user: u, hasUser: err == nil}))
	})
}
