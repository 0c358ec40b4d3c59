package usersync

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
)

// TokenFromHeader returns the token of an "Authorization: Bearer <token>"
// header (scheme case-insensitive, surrounding spaces ignored), or "".
func TokenFromHeader(r *http.Request) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// TokenFromCookie returns a lookup that reads the token from the named
// cookie, such as Clerk's "__session".
func TokenFromCookie(name string) func(r *http.Request) string {
	return func(r *http.Request) string {
		c, err := r.Cookie(name)
		if err != nil {
			return ""
		}
		return c.Value
	}
}

// token returns the request's token by the configured lookups.
func (v *Verifier) token(r *http.Request) string {
	for _, lookup := range v.cfg.TokenLookups {
		if t := lookup(r); t != "" {
			return t
		}
	}
	return ""
}

// Middleware is the soft middleware: a request without a token passes on
// anonymous (FromContext reports no identity); one with a valid token
// passes on with its Identity in the context; one with an invalid token
// gets 401.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return v.middleware(next, false)
}

// RequireIdentity is the hard middleware: like Middleware, but a request
// without a token gets 401 too.
func (v *Verifier) RequireIdentity(next http.Handler) http.Handler {
	return v.middleware(next, true)
}

func (v *Verifier) middleware(next http.Handler, required bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := v.token(r)
		if token == "" {
			if required {
				v.unauthorized(w, r, ErrNoToken)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		id, err := v.Verify(r.Context(), token)
		if err != nil {
			v.unauthorized(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// descriptions are the error_description of each reason, per RFC 6750.
var descriptions = []struct {
	err  error
	text string
}{
	{ErrTokenTooLarge, "token too large"},
	{ErrMalformedToken, "malformed token"},
	{ErrUnknownIssuer, "unknown issuer"},
	{ErrBadSignature, "bad signature"},
	{ErrTokenExpired, "token expired"},
	{ErrTokenNotYetValid, "token not yet valid"},
	{ErrWrongAudience, "audience not accepted"},
	{ErrWrongAuthorizedParty, "authorized party not accepted"},
}

// unauthorized answers 401 with an RFC 6750 challenge. The body and the
// log line carry the reason only, never the token.
func (v *Verifier) unauthorized(w http.ResponseWriter, r *http.Request, err error) {
	challenge := `Bearer realm="` + v.cfg.Realm + `"`
	if !errors.Is(err, ErrNoToken) {
		desc := "invalid token"
		for _, d := range descriptions {
			if errors.Is(err, d.err) {
				desc = d.text
				break
			}
		}
		challenge += `, error="invalid_token", error_description="` + desc + `"`
		if v.cfg.Logger.Enabled(r.Context(), slog.LevelDebug) {
			v.cfg.Logger.DebugContext(r.Context(), "usersync: token rejected", "reason", desc)
		}
	}
	w.Header().Set("WWW-Authenticate", challenge)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}
