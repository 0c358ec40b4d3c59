package usersync

import (
	"encoding/json"

	"github.com/golang-jwt/jwt/v5"
)

// tokenClaims is what a token's payload decodes into: the registered JWT
// claims and the OpenID Connect claims usersync stores.
type tokenClaims struct {
	Iss string           `json:"iss"`
	Sub string           `json:"sub"`
	Aud jwt.ClaimStrings `json:"aud"`
	Azp string           `json:"azp"`
	Exp *jwt.NumericDate `json:"exp"`
	Nbf *jwt.NumericDate `json:"nbf"`
	Iat *jwt.NumericDate `json:"iat"`
	Sid string           `json:"sid"`

	Name              string     `json:"name"`
	GivenName         string     `json:"given_name"`
	FamilyName        string     `json:"family_name"`
	PreferredUsername string     `json:"preferred_username"`
	Picture           string     `json:"picture"`
	Email             string     `json:"email"`
	EmailVerified     *looseBool `json:"email_verified"`
	PhoneNumber       string     `json:"phone_number"`

	key string // the thumbprint of the key that verified the token
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return c.Iss, nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Aud, nil }

// identity converts verified claims into an Identity of the given
// (canonical) issuer; segment is the token's claims segment, for
// Identity.Claims.
func (c *tokenClaims) identity(issuer, segment string) *Identity {
	id := &Identity{
		Issuer:            issuer,
		Subject:           c.Sub,
		TokenIdentifier:   TokenIdentifier(issuer, c.Sub),
		Audience:          c.Aud,
		AuthorizedParty:   c.Azp,
		Name:              c.Name,
		GivenName:         c.GivenName,
		FamilyName:        c.FamilyName,
		PreferredUsername: c.PreferredUsername,
		PictureURL:        c.Picture,
		Email:             c.Email,
		EmailVerified:     (*bool)(c.EmailVerified),
		PhoneNumber:       c.PhoneNumber,
		claims:            &payload{segment: segment},
		key:               c.key,
	}
	if c.Exp != nil {
		id.Expiry = c.Exp.Time
	}
	if c.Iat != nil {
		id.IssuedAt = c.Iat.Time
	}
	if c.Nbf != nil {
		id.NotBefore = c.Nbf.Time
	}
	return id
}

// looseBool accepts a JSON boolean or the strings "true" and "false", as
// some providers (AWS Cognito among them) send email_verified.
type looseBool bool

func (b *looseBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true", `"true"`:
		*b = true
	case "false", `"false"`, "null":
		*b = false
	default:
		return &json.UnmarshalTypeError{Value: "non-boolean", Type: nil}
	}
	return nil
}
