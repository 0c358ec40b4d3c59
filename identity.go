package usersync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// An Extractor finds the verified identity of a request: the identity
// behind RequireUser, LoadUser and RequireIdentity (Config.Extractor).
// The jwtverify package has one for bearer tokens and session cookies;
// any other way of authenticating (mutual TLS, an API gateway's header)
// takes a type with this one method.
type Extractor interface {
	// Identify returns the identity of r, or an error wrapping one of the
	// token errors (ErrNoToken when r carries no credential, ErrInvalidToken
	// or ErrTokenExpired, ErrKeysUnavailable), or any other error for a
	// failure of its own (500). The middlewares look for two optional
	// methods on the error with errors.As: Description() string gives the
	// error_description of a 401's RFC 6750 challenge, and HTTPStatus() int
	// a status of its own (jwtverify answers a cross-site cookie request
	// 403 that way).
	Identify(r *http.Request) (*Identity, error)
}

// Token errors: the vocabulary of an Extractor. The middlewares map each to
// its status (see Config.ErrorHandler); the texts never contain a token.
var (
	// ErrNoToken reports a request without a credential, or a context
	// without an identity. LoadUser passes such a request on signed out.
	// An extractor also wraps it around the failure of a credential a
	// browser sends on its own (jwtverify: a session cookie that does not
	// verify), so that pages behind LoadUser treat a stale session as
	// signed out, while RequireUser still answers the failure.
	ErrNoToken = errors.New("usersync: no bearer token")

	// ErrInvalidToken reports a token that is malformed, too large,
	// expired, not yet valid, badly signed, from an unknown issuer, or for
	// another audience or authorized party.
	ErrInvalidToken = errors.New("usersync: invalid token")

	// ErrTokenExpired reports a token that was valid but has expired: a
	// stale session, not a forged one. It wraps ErrInvalidToken.
	ErrTokenExpired = fmt.Errorf("%w: token expired", ErrInvalidToken)

	// ErrSessionEnded reports a valid token of a session that has ended:
	// signed out, removed or revoked at the provider, or a session of a
	// deleted user (Config.Sessions). It wraps ErrInvalidToken.
	ErrSessionEnded = fmt.Errorf("%w: session ended", ErrInvalidToken)

	// ErrKeysUnavailable reports a token that cannot be checked because its
	// issuer's signing keys cannot be fetched (the JWKS is down or
	// unreachable). It is not the token's fault: the middlewares answer 503
	// with Retry-After, never 401.
	ErrKeysUnavailable = errors.New("usersync: the issuer's signing keys are unavailable")
)

// Identity is the verified identity of a request: the issuer and subject of
// its bearer token and the claims usersync stores. Every other claim,
// standard or custom, is in Claims.
//
// Treat an identity as read-only: a verifier may share one between every
// request that sends the same token.
type Identity struct {
	Issuer  string // iss, without a trailing "/"
	Subject string // sub
	// TokenIdentifier is TokenIdentifier(Issuer, Subject), which ties the
	// person to one stored row.
	TokenIdentifier string

	Audience        []string  // aud
	AuthorizedParty string    // azp
	IssuedAt        time.Time // iat; zero if absent
	NotBefore       time.Time // nbf; zero if absent
	Expiry          time.Time // exp
	// SessionID is the provider's ID of the session the token belongs to
	// (sid: Clerk's "sess_…"), or empty: the key of Config.Sessions.
	SessionID string

	Name              string // name
	GivenName         string // given_name
	FamilyName        string // family_name
	PreferredUsername string // preferred_username
	PictureURL        string // picture
	Email             string // email
	EmailVerified     *bool  // email_verified; nil if absent
	PhoneNumber       string // phone_number
	// Metadata is the JSON value of the issuer's metadata claim, or nil.
	Metadata json.RawMessage
	// Organization is the organization the token names as the session's
	// active one, or nil. It says what the session chose, not who is a
	// member: orgs.RequireMember asks the store.
	Organization *OrganizationClaim

	// Claims is every claim of the token, as signed: the JSON object of its
	// payload. Decode any claim with json.Unmarshal(id.Claims, &v).
	Claims json.RawMessage

	// Data is for the app: an extractor may attach what it decoded from
	// the token's claims (jwtverify.Config.MapIdentity), once per token.
	Data any
}

// A SessionChecker refuses the identities of sessions that have ended
// (Config.Sessions, jwtverify.Config.Sessions): package sessions keeps
// the ended sessions of every replica in memory. CheckSession runs on
// every request, so it must not wait for anything: no store read, no
// network call.
type SessionChecker interface {
	// CheckSession returns nil for an identity whose session may go on,
	// or an error wrapping ErrSessionEnded, or an error of its own, with an
	// HTTPStatus() method for its status (the middlewares' table of
	// Config.ErrorHandler), when it cannot tell.
	CheckSession(id *Identity) error
}

// OrganizationClaim is a token's active organization: Clerk's v2 "o"
// claim ({id, slg, rol}) or its v1 org_id, org_slug, org_role and
// org_permissions.
type OrganizationClaim struct {
	// ID is the provider's ID of the organization ("org_…").
	ID   string
	Slug string
	// Role is the session's role in it, as memberships name roles
	// ("org:admin"): v2's role, which lacks the "org:" prefix, gets it.
	Role string
	// Permissions are v1's org_permissions; v2 encodes them in "o" in a
	// compact form of its own, left in Claims.
	Permissions []string
}

// write returns the write that stores the identity's claims: a claim that
// is absent (or, for text, empty) is not carried, so it never wipes a
// stored value. email_verified is carried on its own: a token with an email
// but no email_verified leaves the stored flag alone, and the flag belongs
// to the address it came with, so a new address reads unverified until a
// flag of its own arrives.
// The version is the token's iat (or nbf without one).
func (id *Identity) write(defaultName string) Write {
	w := Write{
		Issuer:          id.Issuer,
		Subject:         id.Subject,
		TokenIdentifier: id.TokenIdentifier,
		Profile: Profile{
			Name:          id.Name,
			GivenName:     strings.TrimSpace(id.GivenName),
			FamilyName:    strings.TrimSpace(id.FamilyName),
			Email:         id.Email,
			EmailVerified: id.EmailVerified != nil && *id.EmailVerified,
			PictureURL:    id.PictureURL,
			Username:      id.PreferredUsername,
			PhoneNumber:   id.PhoneNumber,
			Metadata:      id.Metadata,
		},
	}
	p := &w.Profile
	if p.Name == "" {
		p.Name = joinName(id.GivenName, id.FamilyName)
	}
	for _, c := range [...]struct {
		present bool
		f       Fields
	}{
		{p.Name != "", FieldName}, {p.GivenName != "", FieldGivenName}, {p.FamilyName != "", FieldFamilyName}, {p.Email != "", FieldEmail}, {id.EmailVerified != nil, FieldEmailVerified}, {p.PictureURL != "", FieldPictureURL},
		{p.Username != "", FieldUsername}, {p.PhoneNumber != "", FieldPhoneNumber}, {p.Metadata != nil, FieldMetadata},
	} {
		if c.present {
			w.Fields |= c.f
		}
	}
	if p.Name == "" {
		p.Name = defaultName // a default: used only if this write creates the user
	}
	switch {
	case !id.IssuedAt.IsZero():
		w.Version = versionOf(id.IssuedAt)
	case !id.NotBefore.IsZero():
		w.Version = versionOf(id.NotBefore)
	}
	return w
}

// joinName joins the non-empty, trimmed parts of a name with one space.
func joinName(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p)
	}
	return b.String()
}

// requestKey is the context key of a request's identity: its value is the
// *Identity (RequireIdentity) or a *requestUser (RequireUser, LoadUser).
type requestKey struct{}

// requestUser is the identity and stored user of a request: a context
// that carries them itself, so that the user middlewares pay for one
// allocation, not two.
type requestUser struct {
	context.Context
	id      *Identity
	user    User
	hasUser bool
}

// Value implements context.Context.
func (r *requestUser) Value(key any) any {
	if key == (requestKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// newContext returns a copy of ctx that carries id.
func newContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, requestKey{}, id)
}

// IdentityFromContext returns the identity that RequireIdentity,
// RequireUser or LoadUser put in the request's context, if any.
func IdentityFromContext(ctx context.Context) (*Identity, bool) {
	switch v := ctx.Value(requestKey{}).(type) {
	case *Identity:
		return v, v != nil
	case *requestUser:
		return v.id, v.id != nil
	}
	return nil, false
}

// UserFromContext returns the stored user that RequireUser or LoadUser
// put in the request's context, if any.
func UserFromContext(ctx context.Context) (User, bool) {
	if v, ok := ctx.Value(requestKey{}).(*requestUser); ok && v.hasUser {
		return v.user, true
	}
	return User{}, false
}
