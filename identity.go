package usersync

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Identity is the verified identity of a request: the issuer and subject of
// its token and every OpenID Connect Core 5.1 standard claim the token
// carries (section 5.1). Claims the token lacks are left empty.
//
// A Verifier produces identities from bearer tokens; tests and apps with
// their own authentication may build one by hand.
type Identity struct {
	Issuer  string // iss
	Subject string // sub
	// TokenIdentifier is Issuer + "|" + Subject: the user's key.
	TokenIdentifier string

	Audience        []string  // aud
	AuthorizedParty string    // azp
	IssuedAt        time.Time // iat; zero if absent
	NotBefore       time.Time // nbf; zero if absent
	Expiry          time.Time // exp

	Name                string    // name
	GivenName           string    // given_name
	FamilyName          string    // family_name
	MiddleName          string    // middle_name
	Nickname            string    // nickname
	PreferredUsername   string    // preferred_username
	ProfileURL          string    // profile
	PictureURL          string    // picture
	Website             string    // website
	Email               string    // email
	EmailVerified       bool      // email_verified
	Gender              string    // gender
	Birthdate           string    // birthdate
	ZoneInfo            string    // zoneinfo
	Locale              string    // locale
	PhoneNumber         string    // phone_number
	PhoneNumberVerified bool      // phone_number_verified
	Address             *Address  // address
	UpdatedAt           time.Time // updated_at; zero if absent

	payload string // the token's claims segment, base64url, as signed
}

// Address is the OpenID Connect address claim (section 5.1.1).
type Address struct {
	Formatted     string `json:"formatted,omitempty"`
	StreetAddress string `json:"street_address,omitempty"`
	Locality      string `json:"locality,omitempty"`
	Region        string `json:"region,omitempty"`
	PostalCode    string `json:"postal_code,omitempty"`
	Country       string `json:"country,omitempty"`
}

// Version is the version of the identity's data: its token's iat, or nbf
// when iat is absent. StoreCurrentUser orders writes by it.
func (id *Identity) Version() Version {
	switch {
	case !id.IssuedAt.IsZero():
		return VersionOf(id.IssuedAt)
	case !id.NotBefore.IsZero():
		return VersionOf(id.NotBefore)
	}
	return 0
}

// Claims decodes every claim of the token, standard or custom (Clerk's sid,
// org_id, o, ...), into v with encoding/json. An identity built by hand has
// no raw claims and leaves v untouched.
func (id *Identity) Claims(v any) error {
	if id.payload == "" {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(id.payload)
	if err != nil {
		return fmt.Errorf("%w: claims: %w", ErrMalformedToken, err)
	}
	return json.Unmarshal(raw, v)
}

// Profile returns the profile fields the identity carries and which of them
// are present: a claim that is absent or empty is not carried, so it never
// wipes a stored value.
func (id *Identity) Profile() (Profile, Fields) {
	p := Profile{
		Name:          id.Name,
		Email:         id.Email,
		EmailVerified: id.EmailVerified,
		PictureURL:    id.PictureURL,
		Username:      id.PreferredUsername,
		PhoneNumber:   id.PhoneNumber,
	}
	if p.Name == "" {
		p.Name = joinName(id.GivenName, id.FamilyName)
	}
	var f Fields
	for _, c := range [...]struct {
		v string
		f Fields
	}{{p.Name, FieldName}, {p.Email, FieldEmail}, {p.PictureURL, FieldPictureURL}, {p.Username, FieldUsername}, {p.PhoneNumber, FieldPhoneNumber}} {
		if c.v != "" {
			f |= c.f
		}
	}
	return p, f
}

// key returns the token identifier, computing it for identities built by
// hand without one.
func (id *Identity) key() string {
	if id.TokenIdentifier != "" {
		return id.TokenIdentifier
	}
	return TokenIdentifier(id.Issuer, id.Subject)
}

type identityKey struct{}

// NewContext returns a copy of ctx that carries id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity in ctx, if any.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}
