package clerk

import (
	"strings"
	"time"

	"github.com/usersync/usersync"
)

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Profile is the default mapping of a Clerk user to a profile: name =
// trimmed "first last", else username, else primary email; given and
// family name = first and last name; email and phone = the primary ones,
// verified by their verification status; picture = image_url; external ID
// = external_id; last sign-in = last_sign_in_at; metadata =
// public_metadata. A webhook carries the whole user,
// so every field is carried — except an email or phone whose primary ID
// names no entry of the lists (a dangling ID): that one is unknown, and the
// stored value is kept.
func Profile(u *User) (usersync.Profile, usersync.Fields) {
	p := usersync.Profile{
		GivenName:  strings.TrimSpace(deref(u.FirstName)),
		FamilyName: strings.TrimSpace(deref(u.LastName)),
		Username:   deref(u.Username),
		PictureURL: u.ImageURL,
		ExternalID: deref(u.ExternalID),
	}
	if u.LastSignInAt != nil && *u.LastSignInAt > 0 {
		p.LastSignInAt = time.UnixMilli(*u.LastSignInAt)
	}
	fields := usersync.AllFields
	if id := deref(u.PrimaryEmailAddressID); id != "" {
		const email = usersync.FieldEmail | usersync.FieldEmailVerified
		fields &^= email
		for _, e := range u.EmailAddresses {
			if e.ID == id {
				p.Email, p.EmailVerified = e.EmailAddress, e.Verification.Verified()
				fields |= email
				break
			}
		}
	}
	if id := deref(u.PrimaryPhoneNumberID); id != "" {
		fields &^= usersync.FieldPhoneNumber
		for _, n := range u.PhoneNumbers {
			if n.ID == id {
				p.PhoneNumber = n.PhoneNumber
				fields |= usersync.FieldPhoneNumber
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

// joinName joins the non-empty, trimmed parts of a name with one space:
// Clerk's first_name and last_name may each be null.
func joinName(first, last string) string {
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" || last == "" {
		return first + last
	}
	return first + " " + last
}
