package jwtverify

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync"
)

// decodeSegment decodes a base64url segment of JSON into v.
func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// tokenClaims is what a token's payload decodes into: the registered JWT
// claims and the OpenID Connect claims usersync stores.
type tokenClaims struct {
	Iss string           `json:"iss"`
	Sub string           `json:"sub"`
	Aud jwt.ClaimStrings `json:"aud"`
	Azp string           `json:"azp"`
	Exp numericDate      `json:"exp"`
	Nbf numericDate      `json:"nbf"`
	Iat numericDate      `json:"iat"`
	Sid string           `json:"sid"`

	Name              string     `json:"name"`
	GivenName         string     `json:"given_name"`
	FamilyName        string     `json:"family_name"`
	PreferredUsername string     `json:"preferred_username"`
	Picture           string     `json:"picture"`
	Email             string     `json:"email"`
	EmailVerified     *looseBool `json:"email_verified"`
	PhoneNumber       string     `json:"phone_number"`

	// The active organization: Clerk's v2 "o" and v1 "org_*" claims, read
	// leniently (a claim of another shape, another issuer's, is ignored).
	O              json.RawMessage `json:"o"`
	OrgID          json.RawMessage `json:"org_id"`
	OrgSlug        json.RawMessage `json:"org_slug"`
	OrgRole        json.RawMessage `json:"org_role"`
	OrgPermissions json.RawMessage `json:"org_permissions"`

	key string // the thumbprint of the key that verified the token
}

// numericDate is a JWT time claim (RFC 7519's NumericDate): seconds since
// the epoch. An integer, the usual form, is read without an allocation;
// any other number is read by golang-jwt's NumericDate, as its parser
// would.
type numericDate struct {
	time.Time
	set bool // the claim is present and not null
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = numericDate{}
		return nil
	}
	if n, ok := parseSeconds(b); ok {
		*d = numericDate{time.Unix(n, 0), true}
		return nil
	}
	var nd jwt.NumericDate
	if err := nd.UnmarshalJSON(b); err != nil {
		return err
	}
	*d = numericDate{nd.Time, true}
	return nil
}

// parseSeconds parses b as a JSON integer of at most 15 digits (well past
// the year 9999), optionally negative; ok is false for anything else.
func parseSeconds(b []byte) (n int64, ok bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 15 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// identity converts verified claims into an Identity of the given
// (canonical) issuer; raw is the token's claims, as signed.
func (c *tokenClaims) identity(issuer string, raw []byte) *usersync.Identity {
	id := &usersync.Identity{
		Issuer:            issuer,
		Subject:           c.Sub,
		TokenIdentifier:   usersync.TokenIdentifier(issuer, c.Sub),
		Audience:          c.Aud,
		AuthorizedParty:   c.Azp,
		SessionID:         c.Sid,
		Name:              c.Name,
		GivenName:         c.GivenName,
		FamilyName:        c.FamilyName,
		PreferredUsername: c.PreferredUsername,
		PictureURL:        c.Picture,
		Email:             c.Email,
		EmailVerified:     (*bool)(c.EmailVerified),
		PhoneNumber:       c.PhoneNumber,
		Claims:            raw,
	}
	id.Organization = c.organization()
	if c.Exp.set {
		id.Expiry = c.Exp.Time
	}
	if c.Iat.set {
		id.IssuedAt = c.Iat.Time
	}
	if c.Nbf.set {
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

// organization returns the token's active organization, or nil: v2's "o"
// ({id, slg, rol}: the role without its "org:" prefix, which it gets back
// here) before v1's org_id, org_slug, org_role and org_permissions.
func (c *tokenClaims) organization() *usersync.OrganizationClaim {
	if len(c.O) > 0 {
		var o struct {
			ID   string `json:"id"`
			Slug string `json:"slg"`
			Role string `json:"rol"`
		}
		if json.Unmarshal(c.O, &o) == nil && o.ID != "" {
			if o.Role != "" && !strings.HasPrefix(o.Role, "org:") {
				o.Role = "org:" + o.Role
			}
			return &usersync.OrganizationClaim{ID: o.ID, Slug: o.Slug, Role: o.Role}
		}
	}
	var id string
	if len(c.OrgID) == 0 || json.Unmarshal(c.OrgID, &id) != nil || id == "" {
		return nil
	}
	org := &usersync.OrganizationClaim{ID: id}
	_ = json.Unmarshal(c.OrgSlug, &org.Slug) // absent or of another shape: none
	_ = json.Unmarshal(c.OrgRole, &org.Role)
	if json.Unmarshal(c.OrgPermissions, &org.Permissions) != nil {
		org.Permissions = nil
	}
	return org
}
