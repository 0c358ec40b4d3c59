package usersync

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// Identity is the verified identity of a request: the issuer and subject of
// its bearer token and the claims usersync stores. Every other claim,
// standard or custom (Clerk's sid, org_id, ...), is read with Claims.
//
// A Verifier makes identities; treat them as read-only, since one may be
// shared by every request that sends the same token.
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

	Name              string // name
	GivenName         string // given_name
	FamilyName        string // family_name
	PreferredUsername string // preferred_username
	PictureURL        string // picture
	Email             string // email
	EmailVerified     *bool  // email_verified; nil if absent
	PhoneNumber       string // phone_number
	// Metadata is the JSON value of the issuer's MetadataClaim, or nil.
	Metadata json.RawMessage

	// Data is for the app: VerifierConfig.MapIdentity may attach what it
	// decoded from the token's claims, once per verified token.
	Data any

	claims *payload // the token's claims, as signed
	key    string   // the thumbprint of the key that verified the token
}

// payload is a verified token's claims segment, base64-decoded on first
// use and then kept: every Claims call of the identity (and of the
// requests that share it through the cache) reuses it.
type payload struct {
	once    sync.Once
	segment string // base64url, as in the token
	json    []byte
	err     error
}

func (p *payload) decode() ([]byte, error) {
	p.once.Do(func() {
		p.json, p.err = base64.RawURLEncoding.DecodeString(p.segment)
	})
	return p.json, p.err
}

// Claims decodes every claim of the token into v with encoding/json.
func (id *Identity) Claims(v any) error {
	if id.claims == nil {
		return nil
	}
	raw, err := id.claims.decode()
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
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
