package orgs

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/metadata"
)

// Organization is one of the provider's organizations, as stored.
//
// Its JSON form is what an app may show: the Issuer and Version that tie
// the row to the provider are left out.
type Organization struct {
	// Issuer is the provider's issuer (as in tokens, without a trailing
	// "/") and ID its ID of the organization ("org_…" for Clerk): together
	// the key of the row.
	Issuer string `json:"-"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	Slug   string `json:"slug,omitempty"`
	// ImageURL is the organization's logo.
	ImageURL string `json:"imageUrl,omitempty"`
	// Metadata is a JSON value (Clerk's public_metadata), or nil.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// CreatedAt is when the provider created the organization.
	CreatedAt time.Time `json:"createdAt"`
	// UpdatedAt is the local time of the last write that changed the row
	// (of a write: its time, which the Syncer fills in from its clock).
	UpdatedAt time.Time `json:"updatedAt"`
	// DeletedAt is set only on tombstones, which deletes return.
	DeletedAt time.Time `json:"deletedAt,omitzero"`
	// Version is the provider's updated_at, in milliseconds since the Unix
	// epoch: a write changes the row only if its version is newer.
	Version usersync.Version `json:"-"`
}

// Membership is a user's membership of an organization, as stored: one
// row per organization and user.
type Membership struct {
	// Issuer is the provider's issuer, OrganizationID its ID of the
	// organization and UserSubject its ID of the user (a token's sub,
	// Clerk's user_id): together the key of the row.
	Issuer         string `json:"-"`
	OrganizationID string `json:"organizationId"`
	UserSubject    string `json:"userSubject"`
	// ID is the provider's ID of the membership ("orgmem_…" for Clerk).
	// A member who leaves and joins again gets a new one.
	ID string `json:"id"`
	// Role is the member's role, as the provider names it ("org:admin",
	// "org:member").
	Role        string   `json:"role"`
	Permissions []string `json:"permissions,omitempty"`
	// Metadata is a JSON value (Clerk's public_metadata), or nil.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// CreatedAt is when the provider created the membership: of two
	// memberships of one user and organization, the one created last holds
	// the row.
	CreatedAt time.Time `json:"createdAt"`
	// UpdatedAt is the local time of the last write that changed the row.
	UpdatedAt time.Time `json:"updatedAt"`
	// DeletedAt is set only on tombstones.
	DeletedAt time.Time        `json:"deletedAt,omitzero"`
	Version   usersync.Version `json:"-"`
}

// Member is a live membership with its live organization: what
// RequireMember admits and puts in the context.
type Member struct {
	Organization Organization
	Membership   Membership
}

// HasRole reports whether the membership's role is one of roles, or
// whether roles is empty. A role matches with or without the provider's
// "org:" prefix, as session tokens (v2) leave it out.
func (m *Membership) HasRole(roles ...string) bool {
	if len(roles) == 0 {
		return true
	}
	have := strings.TrimPrefix(m.Role, "org:")
	for _, r := range roles {
		if strings.TrimPrefix(r, "org:") == have {
			return true
		}
	}
	return false
}

// Size limits, the same for every store (SQL key columns have fixed
// widths). A longer value is bad input: ErrInvalid.
const (
	maxIDLen          = 128
	maxIssuerLen      = 255
	maxSubjectLen     = 255
	maxTextLen        = 16 << 10
	maxRoleLen        = 255
	maxPermissions    = 256
	maxPermissionLen  = 255
	maxVersion        = usersync.Version(253402300799999) // the year 9999
	maxPermissionsLen = 16 << 10                          // their JSON
)

// Validate reports whether o is a well-formed write, failing with an error
// wrapping usersync.ErrInvalid if not: Issuer (no trailing "/", at most
// 255 bytes) and ID (at most 128) present; UpdatedAt set; a version from 1
// to the year 9999; CreatedAt zero or from the epoch to the year 9999;
// every text valid UTF-8 without NUL characters and at most 16 KiB;
// metadata as usersync.Write.Validate takes it. It rewrites the metadata
// in the form every store takes, so stores call it first and store what it
// leaves.
func (o *Organization) Validate() error {
	if err := checkKey(o.Issuer, o.ID, "organization ID", maxIDLen); err != nil {
		return err
	}
	if err := checkWrite(o.Version, o.CreatedAt, o.UpdatedAt); err != nil {
		return err
	}
	for _, t := range [...]string{o.Name, o.Slug, o.ImageURL} {
		if len(t) > maxTextLen || !cleanText(t) {
			return fmt.Errorf("%w: an organization's name, slug or image URL cannot be stored (too long, not UTF-8, a NUL character)", usersync.ErrInvalid)
		}
	}
	m, err := metadata.Normalize(o.Metadata)
	if err != nil {
		return fmt.Errorf("%w: %w", usersync.ErrInvalid, err)
	}
	o.Metadata = m
	return nil
}

// Validate reports whether m is a well-formed write, as
// Organization.Validate does: Issuer, OrganizationID, UserSubject (at most
// 255 bytes) and ID present; a role of at most 255 bytes; at most 256
// permissions of at most 255 bytes each and 16 KiB in all, as JSON.
func (m *Membership) Validate() error {
	if err := checkKey(m.Issuer, m.OrganizationID, "organization ID", maxIDLen); err != nil {
		return err
	}
	switch {
	case m.UserSubject == "" || len(m.UserSubject) > maxSubjectLen || !cleanText(m.UserSubject):
		return fmt.Errorf("%w: a membership's user subject is empty, too long or not clean UTF-8", usersync.ErrInvalid)
	case m.ID == "" || len(m.ID) > maxIDLen || !cleanText(m.ID):
		return fmt.Errorf("%w: a membership's ID is empty, too long or not clean UTF-8", usersync.ErrInvalid)
	case len(m.Role) > maxRoleLen || !cleanText(m.Role):
		return fmt.Errorf("%w: a membership's role cannot be stored", usersync.ErrInvalid)
	case len(m.Permissions) > maxPermissions:
		return fmt.Errorf("%w: a membership with more than %d permissions", usersync.ErrInvalid, maxPermissions)
	}
	size := 2 // their JSON array, as stores keep it
	for _, p := range m.Permissions {
		if p == "" || len(p) > maxPermissionLen || !cleanText(p) {
			return fmt.Errorf("%w: a membership's permission is empty, too long or not clean UTF-8", usersync.ErrInvalid)
		}
		size += len(p) + 3
	}
	if size > maxPermissionsLen/6 { // escapes may make them longer: count exactly
		if b, _ := json.Marshal(m.Permissions); len(b) > maxPermissionsLen {
			return fmt.Errorf("%w: a membership's permissions take more than %d bytes of JSON", usersync.ErrInvalid, maxPermissionsLen)
		}
	}
	if err := checkWrite(m.Version, m.CreatedAt, m.UpdatedAt); err != nil {
		return err
	}
	md, err := metadata.Normalize(m.Metadata)
	if err != nil {
		return fmt.Errorf("%w: %w", usersync.ErrInvalid, err)
	}
	m.Metadata = md
	return nil
}

// checkKey checks an issuer and an ID of the provider.
func checkKey(issuer, id, what string, maxLen int) error {
	switch {
	case issuer == "" || strings.HasSuffix(issuer, "/") || len(issuer) > maxIssuerLen || !cleanText(issuer):
		return fmt.Errorf("%w: an empty or malformed issuer (no trailing \"/\", at most %d bytes)", usersync.ErrInvalid, maxIssuerLen)
	case id == "" || len(id) > maxLen || !cleanText(id):
		return fmt.Errorf("%w: the %s is empty, longer than %d bytes or not clean UTF-8", usersync.ErrInvalid, what, maxLen)
	}
	return nil
}

// checkWrite checks what every write carries: its version, the
// provider's creation time and the local time of the write.
func checkWrite(v usersync.Version, created, at time.Time) error {
	switch {
	case v < 1 || v > maxVersion:
		return fmt.Errorf("%w: a version from 1 to the year 9999 (the provider's updated_at)", usersync.ErrInvalid)
	case !created.IsZero() && !inRange(created):
		return fmt.Errorf("%w: a creation time before the epoch or after the year 9999", usersync.ErrInvalid)
	case at.IsZero() || !inRange(at):
		return fmt.Errorf("%w: no time (UpdatedAt) of the write, or one out of range", usersync.ErrInvalid)
	}
	return nil
}

func inRange(t time.Time) bool {
	s := t.Unix()
	return s >= 0 && s <= int64(maxVersion/1000)
}

// cleanText reports whether s is valid UTF-8 without NUL characters.
func cleanText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// Key returns the key a store keeps a row of the issuer's ID under:
// usersync.TokenIdentifier(issuer, id), so an organization's key is
// "<issuer>|org_…" and a member's user key is the user's token identifier.
func Key(issuer, id string) string { return usersync.TokenIdentifier(issuer, id) }
