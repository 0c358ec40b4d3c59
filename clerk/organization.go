package clerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// Organization is Clerk's OrganizationJSON, the data of the
// organization.created and organization.updated events and of the Backend
// API's organizations; for organization.deleted, DeletedObjectJSON: only
// Object, ID, Slug (sometimes) and Deleted set. Nullable and optional
// fields are pointers; unknown fields are ignored.
type Organization struct {
	Object                string          `json:"object,omitempty"` // "organization"
	ID                    string          `json:"id"`               // "org_…"
	Deleted               bool            `json:"deleted,omitempty"`
	Name                  string          `json:"name,omitempty"`
	Slug                  string          `json:"slug,omitempty"`
	ImageURL              *string         `json:"image_url,omitempty"`
	HasImage              bool            `json:"has_image,omitempty"`
	MembersCount          *int64          `json:"members_count,omitempty"`
	MaxAllowedMemberships int64           `json:"max_allowed_memberships,omitempty"`
	AdminDeleteEnabled    bool            `json:"admin_delete_enabled,omitempty"`
	PublicMetadata        json.RawMessage `json:"public_metadata,omitempty"`
	PrivateMetadata       json.RawMessage `json:"private_metadata,omitempty"`
	CreatedBy             string          `json:"created_by,omitempty"` // a user ID
	CreatedAt             int64           `json:"created_at,omitempty"` // ms since the epoch
	UpdatedAt             int64           `json:"updated_at,omitempty"` // ms since the epoch
}

// OrganizationMembership is Clerk's OrganizationMembershipJSON, the data
// of the organizationMembership.* events (deleted included: it carries
// the whole membership) and of the Backend API's membership lists.
type OrganizationMembership struct {
	Object          string          `json:"object,omitempty"` // "organization_membership"
	ID              string          `json:"id"`               // "orgmem_…"
	Role            string          `json:"role"`             // "org:admin", "org:member", …
	Permissions     []string        `json:"permissions,omitempty"`
	PublicMetadata  json.RawMessage `json:"public_metadata,omitempty"`
	PrivateMetadata json.RawMessage `json:"private_metadata,omitempty"`
	CreatedAt       int64           `json:"created_at,omitempty"` // ms since the epoch
	UpdatedAt       int64           `json:"updated_at,omitempty"` // ms since the epoch
	Organization    Organization    `json:"organization"`
	PublicUserData  PublicUserData  `json:"public_user_data"`
}

// PublicUserData is the member's public data in an
// OrganizationMembership.
type PublicUserData struct {
	UserID     string  `json:"user_id"`
	Identifier string  `json:"identifier,omitempty"` // the user's email address, phone number, username, …
	FirstName  *string `json:"first_name"`
	LastName   *string `json:"last_name"`
	ImageURL   string  `json:"image_url,omitempty"`
	HasImage   bool    `json:"has_image,omitempty"`
}

// MapOrganization maps a Clerk organization to the organization usersync
// stores for issuer: its ID, name, slug, image URL and public_metadata
// (the private metadata is left out, as for users), created at its
// created_at, versioned by its updated_at. UpdatedAt is left zero for
// the orgs.Syncer's clock.
func MapOrganization(issuer string, o *Organization) orgs.Organization {
	return orgs.Organization{
		Issuer: issuer, ID: o.ID, Name: o.Name, Slug: o.Slug, ImageURL: deref(o.ImageURL),
		Metadata: publicMetadata(o.PublicMetadata), CreatedAt: millis(o.CreatedAt), Version: usersync.Version(o.UpdatedAt),
	}
}

// MapMembership maps a Clerk membership to the membership usersync
// stores for issuer: of the organization organization.id and the user
// public_user_data.user_id, with its ID, role, permissions and
// public_metadata, created at its created_at, versioned by its
// updated_at. UpdatedAt is left zero for the orgs.Syncer's clock.
func MapMembership(issuer string, m *OrganizationMembership) orgs.Membership {
	return orgs.Membership{
		Issuer: issuer, OrganizationID: m.Organization.ID, UserSubject: m.PublicUserData.UserID, ID: m.ID,
		Role: m.Role, Permissions: m.Permissions, Metadata: publicMetadata(m.PublicMetadata),
		CreatedAt: millis(m.CreatedAt), Version: usersync.Version(m.UpdatedAt),
	}
}

// publicMetadata is a payload's public_metadata as stored: nil for none.
func publicMetadata(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}

// millis is a time in ms since the epoch, or the zero time for none.
func millis(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// The event types of organizations and memberships.
const (
	orgCreated        = "organization.created"
	orgUpdated        = "organization.updated"
	orgDeleted        = "organization.deleted"
	membershipCreated = "organizationMembership.created"
	membershipUpdated = "organizationMembership.updated"
	membershipDeleted = "organizationMembership.deleted"
)

func isOrgEvent(t string) bool {
	switch t {
	case orgCreated, orgUpdated, orgDeleted, membershipCreated, membershipUpdated, membershipDeleted:
		return true
	}
	return false
}

// decodeOrgEvent decodes an organization.* or organizationMembership.*
// event into an event whose Apply writes it through the configured
// orgs.Syncer. A malformed event fails with an error wrapping
// usersync.ErrInvalid.
func (p *Provider) decodeOrgEvent(eventType string, body []byte) (usersync.Event, error) {
	out := usersync.Event{Type: eventType}
	s, issuer := p.cfg.Organizations, p.cfg.Issuer
	switch eventType {
	case orgCreated, orgUpdated, orgDeleted:
		var ev struct {
			Data *Organization `json:"data"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			return out, fmt.Errorf("%w: clerk: malformed %s event: %w", usersync.ErrInvalid, eventType, jsonError(err))
		}
		switch o := ev.Data; {
		case o == nil || o.ID == "":
			return out, fmt.Errorf("%w: clerk: organization event without data.id", usersync.ErrInvalid)
		case eventType == orgDeleted:
			id := o.ID
			out.Apply = func(ctx context.Context) (usersync.Outcome, error) {
				_, outcome, err := s.DeleteOrganization(ctx, issuer, id)
				return outcome, err
			}
		case o.UpdatedAt <= 0:
			return out, fmt.Errorf("%w: clerk: organization event without data.updated_at", usersync.ErrInvalid)
		default:
			org := MapOrganization(issuer, o)
			out.Apply = func(ctx context.Context) (usersync.Outcome, error) {
				_, outcome, err := s.UpsertOrganization(ctx, org)
				return outcome, err
			}
		}
		return out, nil
	}
	var ev struct {
		Data *OrganizationMembership `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return out, fmt.Errorf("%w: clerk: malformed %s event: %w", usersync.ErrInvalid, eventType, jsonError(err))
	}
	m := ev.Data
	switch {
	case m == nil || m.ID == "":
		return out, fmt.Errorf("%w: clerk: membership event without data.id", usersync.ErrInvalid)
	case m.Organization.ID == "":
		return out, fmt.Errorf("%w: clerk: membership event without data.organization.id", usersync.ErrInvalid)
	case m.PublicUserData.UserID == "":
		return out, fmt.Errorf("%w: clerk: membership event without data.public_user_data.user_id", usersync.ErrInvalid)
	case eventType == membershipDeleted:
		// It carries the whole membership: its ID and created_at name the
		// membership the delete ends, whatever its version.
		mem := MapMembership(issuer, m)
		out.Apply = func(ctx context.Context) (usersync.Outcome, error) {
			_, outcome, err := s.DeleteMembership(ctx, mem)
			return outcome, err
		}
		return out, nil
	case m.UpdatedAt <= 0:
		return out, fmt.Errorf("%w: clerk: membership event without data.updated_at", usersync.ErrInvalid)
	}
	mem := MapMembership(issuer, m)
	var org *orgs.Organization
	if m.Organization.UpdatedAt > 0 { // versioned: it can be written
		o := MapOrganization(issuer, &m.Organization)
		org = &o
	}
	out.Apply = func(ctx context.Context) (usersync.Outcome, error) {
		if org != nil {
			// The organization first, at its own version: a membership
			// may come before its organization's event. A stale one is
			// fine; a deleted one refuses the membership too.
			if _, _, err := s.UpsertOrganization(ctx, *org); err != nil {
				return usersync.Stale, err
			}
		}
		_, outcome, err := s.UpsertMembership(ctx, mem)
		return outcome, err
	}
	return out, nil
}

// jsonError is err without the input it may quote: a syntax or type error
// names the offset or the field, never the value.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("field %s: want a JSON value for %s", typeErr.Field, typeErr.Type)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Errorf("invalid JSON at offset %d", syntaxErr.Offset)
	}
	return err
}
