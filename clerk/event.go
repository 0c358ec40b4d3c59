package clerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/usersync/usersync"
)

// Event is the envelope of a Clerk webhook, with the user data of the
// user.* events. Unknown fields are ignored.
type Event struct {
	Type       string `json:"type"`
	Object     string `json:"object"`
	Timestamp  int64  `json:"timestamp,omitempty"` // ms in the docs, s in some examples: not relied on
	InstanceID string `json:"instance_id,omitempty"`
	Data       User   `json:"data"`
}

// User is Clerk's UserJSON (and, for user.deleted, DeletedObjectJSON: only
// ID and Deleted set). Nullable fields are pointers.
type User struct {
	Object                string          `json:"object,omitempty"`
	ID                    string          `json:"id"`
	Deleted               bool            `json:"deleted,omitempty"`
	ExternalID            *string         `json:"external_id,omitempty"`
	Username              *string         `json:"username"`
	FirstName             *string         `json:"first_name"`
	LastName              *string         `json:"last_name"`
	ImageURL              string          `json:"image_url,omitempty"`
	PrimaryEmailAddressID *string         `json:"primary_email_address_id"`
	PrimaryPhoneNumberID  *string         `json:"primary_phone_number_id"`
	EmailAddresses        []EmailAddress  `json:"email_addresses"`
	PhoneNumbers          []PhoneNumber   `json:"phone_numbers"`
	PublicMetadata        json.RawMessage `json:"public_metadata,omitempty"`
	PrivateMetadata       json.RawMessage `json:"private_metadata,omitempty"`
	UnsafeMetadata        json.RawMessage `json:"unsafe_metadata,omitempty"`
	LastSignInAt          *int64          `json:"last_sign_in_at,omitempty"` // ms since the epoch
	CreatedAt             int64           `json:"created_at,omitempty"`      // ms since the epoch
	UpdatedAt             int64           `json:"updated_at,omitempty"`      // ms since the epoch
}

// EmailAddress is one of a Clerk user's email addresses.
type EmailAddress struct {
	ID           string        `json:"id"`
	EmailAddress string        `json:"email_address"`
	Verification *Verification `json:"verification"`
}

// PhoneNumber is one of a Clerk user's phone numbers.
type PhoneNumber struct {
	ID           string        `json:"id"`
	PhoneNumber  string        `json:"phone_number"`
	Verification *Verification `json:"verification"`
}

// Verification is the verification state of an address or number.
type Verification struct {
	Status   string `json:"status"` // unverified, verified, failed, expired
	Strategy string `json:"strategy,omitempty"`
}

// Verified reports whether v exists and its status is "verified".
func (v *Verification) Verified() bool { return v != nil && v.Status == "verified" }

func isUserEvent(t string) bool {
	return t == "user.created" || t == "user.updated" || t == "user.deleted"
}

// Decode implements usersync.Provider: user.created and user.updated
// become upserts versioned by the user's updated_at, mapped by
// Config.MapUser; user.deleted becomes a delete. With
// Config.Organizations, the organization.* and organizationMembership.*
// events become events whose Apply writes them through it (a membership's
// created and updated events write its organization first, at the
// organization's own updated_at). With Config.Sessions, session.ended,
// session.removed and session.revoked become events whose Apply records
// the ending (Set.End: the session's ID and user, ended at the later of
// its updated_at and the event's timestamp, else now), so that every
// replica refuses the session's tokens; their Outcome is Deleted, or
// Stale when the Set held the ending already (a redelivery). Of their
// data only id (required), user_id and updated_at are read, so that a
// change in another field never loses an ending. Without
// Config.Sessions they are events about something else, and the first is
// logged (Config.Logger). Every other type, such as session.created, is an
// event about something else: none un-ends a session. A malformed user,
// organization or membership event, or a session ending without a data
// object with an id, fails with an error wrapping usersync.ErrInvalid.
func (p *Provider) Decode(ctx context.Context, body []byte) (usersync.Event, error) {
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && ev.Type != "" && !isUserEvent(ev.Type) {
			// Not about a user: its data has other shapes.
			return p.decodeOther(ctx, ev.Type, body)
		}
		return usersync.Event{Type: ev.Type}, fmt.Errorf("%w: clerk: malformed event JSON: %w", usersync.ErrInvalid, err)
	}
	out := usersync.Event{Type: ev.Type}
	switch {
	case ev.Type == "":
		return out, fmt.Errorf("%w: clerk: event without a type", usersync.ErrInvalid)
	case !isUserEvent(ev.Type):
		return p.decodeOther(ctx, ev.Type, body)
	case ev.Data.ID == "":
		return out, fmt.Errorf("%w: clerk: user event without data.id", usersync.ErrInvalid)
	case ev.Type == "user.deleted":
		out.Write, out.Delete = &usersync.Write{Issuer: p.cfg.Issuer, Subject: ev.Data.ID}, true
		return out, nil
	case ev.Data.UpdatedAt <= 0:
		return out, fmt.Errorf("%w: clerk: user event without data.updated_at", usersync.ErrInvalid)
	}
	w := p.write(&ev.Data)
	out.Write = &w
	return out, nil
}

// decodeOther decodes an event that is not about a user: one of the
// entities the Provider applies itself (Config.Organizations,
// Config.Sessions), or an event about something else.
func (p *Provider) decodeOther(ctx context.Context, eventType string, body []byte) (usersync.Event, error) {
	switch {
	case p.cfg.Organizations != nil && isOrgEvent(eventType):
		return p.decodeOrgEvent(eventType, body)
	case isSessionEnding(eventType) && p.cfg.Sessions != nil:
		return p.decodeSessionEvent(eventType, body)
	case isSessionEnding(eventType) && p.endingsIgnored.CompareAndSwap(false, true):
		p.log.InfoContext(ctx, "clerk: session.ended, session.removed and session.revoked are not recorded, as clerk.Config.Sessions is not set: "+
			"an ended session's tokens pass until they expire (unless usersync.WebhookConfig.OnEvent handles these events)", "issuer", p.cfg.Issuer)
	}
	return usersync.Event{Type: eventType}, nil
}
