package usersync

import (
	"encoding/json"
	"strings"
)

// ClerkEvent is the envelope of a Clerk webhook, with the user data of the
// user.* events. Unknown fields are ignored.
type ClerkEvent struct {
	Type       string    `json:"type"`
	Object     string    `json:"object"`
	Timestamp  int64     `json:"timestamp,omitempty"` // ms in the docs, s in some examples: not relied on
	InstanceID string    `json:"instance_id,omitempty"`
	Data       ClerkUser `json:"data"`
}

// ClerkUser is Clerk's UserJSON (and, for user.deleted, DeletedObjectJSON:
// only ID and Deleted set). Nullable fields are pointers.
type ClerkUser struct {
	Object                string              `json:"object,omitempty"`
	ID                    string              `json:"id"`
	Deleted               bool                `json:"deleted,omitempty"`
	ExternalID            *string             `json:"external_id,omitempty"`
	Username              *string             `json:"username"`
	FirstName             *string             `json:"first_name"`
	LastName              *string             `json:"last_name"`
	ImageURL              string              `json:"image_url,omitempty"`
	PrimaryEmailAddressID *string             `json:"primary_email_address_id"`
	PrimaryPhoneNumberID  *string             `json:"primary_phone_number_id"`
	EmailAddresses        []ClerkEmailAddress `json:"email_addresses"`
	PhoneNumbers          []ClerkPhoneNumber  `json:"phone_numbers"`
	PublicMetadata        json.RawMessage     `json:"public_metadata,omitempty"`
	PrivateMetadata       json.RawMessage     `json:"private_metadata,omitempty"`
	UnsafeMetadata        json.RawMessage     `json:"unsafe_metadata,omitempty"`
	CreatedAt             int64               `json:"created_at,omitempty"` // ms since the epoch
	UpdatedAt             int64               `json:"updated_at,omitempty"` // ms since the epoch
}

// ClerkEmailAddress is one of a Clerk user's email addresses.
type ClerkEmailAddress struct {
	ID           string             `json:"id"`
	EmailAddress string             `json:"email_address"`
	Verification *ClerkVerification `json:"verification"`
}

// ClerkPhoneNumber is one of a Clerk user's phone numbers.
type ClerkPhoneNumber struct {
	ID           string             `json:"id"`
	PhoneNumber  string             `json:"phone_number"`
	Verification *ClerkVerification `json:"verification"`
}

// ClerkVerification is the verification state of an address or number.
type ClerkVerification struct {
	Status   string `json:"status"` // unverified, verified, failed, expired
	Strategy string `json:"strategy,omitempty"`
}

// Verified reports whether v exists and its status is "verified".
func (v *ClerkVerification) Verified() bool { return v != nil && v.Status == "verified" }

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ClerkProfile is the default mapping of a Clerk user to a profile: name =
// trimmed "first last", else username, else primary email; email and phone
// = the primary ones, verified by their verification status; picture =
// image_url; metadata = public_metadata. A webhook carries the whole user,
// so every field is carried — except an email or phone whose primary ID
// names no entry of the lists (a dangling ID): that one is unknown, and the
// stored value is kept.
func ClerkProfile(u *ClerkUser) (Profile, Fields) {
	p := Profile{
		Username:   deref(u.Username),
		PictureURL: u.ImageURL,
	}
	fields := AllFields
	if id := deref(u.PrimaryEmailAddressID); id != "" {
		fields &^= FieldEmail
		for _, e := range u.EmailAddresses {
			if e.ID == id {
				p.Email, p.EmailVerified = e.EmailAddress, e.Verification.Verified()
				fields |= FieldEmail
				break
			}
		}
	}
	if id := deref(u.PrimaryPhoneNumberID); id != "" {
		fields &^= FieldPhoneNumber
		for _, n := range u.PhoneNumbers {
			if n.ID == id {
				p.PhoneNumber = n.PhoneNumber
				fields |= FieldPhoneNumber
				break
			}
		}
	}
	p.Name = joinName(deref(u.FirstName), deref(u.LastName))
	if p.Name == "" {
		p.Name = strings.TrimSpace(p.Username)
	}
	if p.Name == "" {
		p.Name = p.Email
	}
	if m := u.PublicMetadata; len(m) > 0 && string(m) != "null" {
		p.Metadata = m
	}
	return p, fields
}
