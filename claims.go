package usersync

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenClaims is what a token's payload decodes into: the registered JWT
// claims and the OpenID Connect standard claims.
type tokenClaims struct {
	Iss string           `json:"iss"`
	Sub string           `json:"sub"`
	Aud jwt.ClaimStrings `json:"aud"`
	Azp string           `json:"azp"`
	Exp *jwt.NumericDate `json:"exp"`
	Nbf *jwt.NumericDate `json:"nbf"`
	Iat *jwt.NumericDate `json:"iat"`

	Name                string    `json:"name"`
	GivenName           string    `json:"given_name"`
	FamilyName          string    `json:"family_name"`
	MiddleName          string    `json:"middle_name"`
	Nickname            string    `json:"nickname"`
	PreferredUsername   string    `json:"preferred_username"`
	Profile             string    `json:"profile"`
	Picture             string    `json:"picture"`
	Website             string    `json:"website"`
	Email               string    `json:"email"`
	EmailVerified       looseBool `json:"email_verified"`
	Gender              string    `json:"gender"`
	Birthdate           string    `json:"birthdate"`
	ZoneInfo            string    `json:"zoneinfo"`
	Locale              string    `json:"locale"`
	PhoneNumber         string    `json:"phone_number"`
	PhoneNumberVerified looseBool `json:"phone_number_verified"`
	Address             *Address  `json:"address"`
	UpdatedAt           looseTime `json:"updated_at"`
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return c.Iss, nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Aud, nil }

// identity converts verified claims into an Identity.
func (c *tokenClaims) identity(payload string) *Identity {
	id := &Identity{
		Issuer:              c.Iss,
		Subject:             c.Sub,
		TokenIdentifier:     TokenIdentifier(c.Iss, c.Sub),
		Audience:            c.Aud,
		AuthorizedParty:     c.Azp,
		Name:                c.Name,
		GivenName:           c.GivenName,
		FamilyName:          c.FamilyName,
		MiddleName:          c.MiddleName,
		Nickname:            c.Nickname,
		PreferredUsername:   c.PreferredUsername,
		ProfileURL:          c.Profile,
		PictureURL:          c.Picture,
		Website:             c.Website,
		Email:               c.Email,
		EmailVerified:       bool(c.EmailVerified),
		Gender:              c.Gender,
		Birthdate:           c.Birthdate,
		ZoneInfo:            c.ZoneInfo,
		Locale:              c.Locale,
		PhoneNumber:         c.PhoneNumber,
		PhoneNumberVerified: bool(c.PhoneNumberVerified),
		Address:             c.Address,
		UpdatedAt:           time.Time(c.UpdatedAt),
		payload:             payload,
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

// looseTime accepts updated_at as seconds since the epoch (the OIDC form)
// or an RFC 3339 string.
type looseTime time.Time

func (t *looseTime) UnmarshalJSON(data []byte) error {
	if bytes.Equal(data, []byte("null")) {
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		parsed, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return err
		}
		*t = looseTime(parsed)
		return nil
	}
	f, err := strconv.ParseFloat(string(data), 64)
	if err != nil {
		return err
	}
	*t = looseTime(time.Unix(int64(f), 0))
	return nil
}
