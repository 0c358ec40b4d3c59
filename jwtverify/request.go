package jwtverify

import (
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/usersync/usersync"
)

// Identify verifies the token of r, from its "Authorization: Bearer"
// header or else its session cookie (Config.Cookie), into an identity: it
// makes the Verifier a usersync.Extractor. A request without either fails
// with usersync.ErrNoToken; a token that does not verify fails as Verify
// does, and a cookie's token also wraps ErrNoToken, so that LoadUser
// treats a stale session cookie (Clerk's expires every minute) as signed
// out. A cookie-authenticated request that changes state must also pass
// the cross-site check (see Config.Cookie), or it is refused with an error
// whose HTTPStatus is 403.
func (v *Verifier) Identify(r *http.Request) (*usersync.Identity, error) {
	token, fromCookie := tokenFromHeader(r), false
	if token == "" && v.cfg.Cookie != "-" {
		if c, err := r.Cookie(v.cfg.Cookie); err == nil {
			token, fromCookie = c.Value, true
		}
	}
	if token == "" {
		return nil, usersync.ErrNoToken
	}
	id, err := v.Verify(r.Context(), token)
	switch {
	case err != nil && fromCookie:
		return nil, &cookieError{err}
	case err != nil:
		return nil, err
	case fromCookie && !v.sameSite(r, id):
		return nil, errCrossSite
	}
	return id, nil
}

// cookieError is the failure of a session cookie's token: it wraps both
// usersync.ErrNoToken (a stale session is no session) and the reason.
type cookieError struct{ err error }

func (e *cookieError) Error() string   { return "jwtverify: session cookie: " + e.err.Error() }
func (e *cookieError) Unwrap() []error { return []error{usersync.ErrNoToken, e.err} }

// crossSiteError refuses a state-changing request authenticated by a
// cookie that may come from another site.
type crossSiteError struct{}

func (crossSiteError) Error() string {
	return "jwtverify: cross-site request refused: a cookie-authenticated request that changes state must send Content-Type: application/json and an Origin (or Sec-Fetch-Site) of the app itself or an authorized party"
}

// HTTPStatus is 403 Forbidden: the request's token is fine, the request
// is not.
func (crossSiteError) HTTPStatus() int { return http.StatusForbidden }

var errCrossSite error = crossSiteError{}

// sameSite is the CSRF defence of cookie-authenticated requests: a browser
// attaches cookies to requests other sites make, so a request that may
// change state (any method but GET, HEAD, OPTIONS and TRACE) counts only
// if it is JSON (which a cross-site form or a "simple" fetch cannot send
// without a CORS preflight) and comes from the app's own origin or an
// authorized party of the token's issuer, as the browser's Sec-Fetch-Site
// or Origin says. Bearer-header requests need no such check: no browser
// sends those on its own.
func (v *Verifier) sameSite(r *http.Request, id *usersync.Identity) bool {
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
