package usersync

import (
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// RequireIdentity is the middleware for handlers that need only the
// verified identity, not the stored user: a request without a valid token
// is answered by the error handler (401, or 503 when the issuer's keys are
// unavailable); one with a valid token passes on with its Identity in the
// context (IdentityFromContext).
func (v *Verifier) RequireIdentity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _, err := v.identify(r)
		if id == nil && err == nil {
			err = ErrNoToken
		}
		if err != nil {
			v.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(newContext(r.Context(), id)))
	})
}

// identify verifies the request's token, and says whether it came from
// the cookie. It returns no identity and no error for a request without
// one. A cookie's token on a request that changes state must also pass the
// cross-site check, or identify fails with errCrossSite.
func (v *Verifier) identify(r *http.Request) (id *Identity, fromCookie bool, err error) {
	token := tokenFromHeader(r)
	if token == "" && v.cfg.Cookie != "-" {
		if c, err := r.Cookie(v.cfg.Cookie); err == nil {
			token, fromCookie = c.Value, true
		}
	}
	if token == "" {
		return nil, false, nil
	}
	id, err = v.Verify(r.Context(), token)
	if err == nil && fromCookie && !v.sameSite(r, id) {
		return nil, true, errCrossSite
	}
	return id, fromCookie, err
}

// errCrossSite refuses a state-changing request authenticated by a cookie
// that may come from another site: 403.
var errCrossSite = errors.New("usersync: cross-site request refused: a cookie-authenticated request that changes state must send Content-Type: application/json and an Origin (or Sec-Fetch-Site) of the app itself or an authorized party")

// sameSite is the CSRF defence of cookie-authenticated requests: a browser
// attaches cookies to requests other sites make, so a request that may
// change state (any method but GET, HEAD, OPTIONS and TRACE) counts only
// if it is JSON (which a cross-site form or a "simple" fetch cannot send
// without a CORS preflight) and comes from the app's own origin or an
// authorized party of the token's issuer, as the browser's Sec-Fetch-Site
// or Origin says. Bearer-header requests need no such check: no browser
// sends those on its own.
func (v *Verifier) sameSite(r *http.Request, id *Identity) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		if site == "same-origin" {
			return true
		}
		if r.Header.Get("Origin") == "" {
			return false
		}
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	if u, err := url.Parse(origin); err == nil && u.Host == r.Host && u.Host != "" {
		return true
	}
	if k := v.issuers[id.Issuer]; k != nil {
		return slices.Contains(k.cfg.AuthorizedParties, origin)
	}
	return false
}

// tokenFromHeader returns the token of an "Authorization: Bearer <token>"
// header (scheme case-insensitive, surrounding spaces ignored), or "".
func tokenFromHeader(r *http.Request) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// statusOf maps an error of the middlewares to its HTTP status: the table
// of VerifierConfig.ErrorHandler.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNoToken), errors.Is(err, ErrInvalidToken):
		return http.StatusUnauthorized
	case errors.Is(err, ErrKeysUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrDeleted), errors.Is(err, errCrossSite):
		return http.StatusForbidden
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// retryAfter is the Retry-After of a 503 for unavailable keys: about the
// longest backoff of a failed key fetch.
var retryAfter = strconv.Itoa(int(maxBackoff.Seconds()) + 1)

// fail answers a request the middlewares refuse: it sets the headers its
// status needs, logs the reason (never the token) and calls the error
// handler.
func (v *Verifier) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	ctx := r.Context()
	switch status {
	case http.StatusUnauthorized:
		challenge := `Bearer realm="` + v.cfg.Realm + `"`
		var te *tokenError
		if errors.As(err, &te) {
			challenge += `, error="invalid_token", error_description="` + te.desc + `"`
			if v.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
				v.cfg.Logger.DebugContext(ctx, "usersync: token rejected", "reason", te.desc)
			}
		}
		w.Header().Set("WWW-Authenticate", challenge)
	case http.StatusServiceUnavailable:
		// The key fetcher logs the outage once; a line per request would
		// flood the log.
		w.Header().Set("Retry-After", retryAfter)
	case http.StatusInternalServerError:
		v.cfg.Logger.ErrorContext(ctx, "usersync: request failed", "path", r.URL.Path, "error", err)
	}
	if v.cfg.ErrorHandler != nil {
		v.cfg.ErrorHandler(w, r, status, err)
		return
	}
	http.Error(w, strings.ToLower(http.StatusText(status)), status)
}
