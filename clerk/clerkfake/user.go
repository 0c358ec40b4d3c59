package clerkfake

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/usersync/usersync/clerk"
)

// User describes a Clerk user in a few fields: of a generated event, or
// listed by an Instance. Clerk's whole user object is Clerk's; a users
// file (Instance.PutJSON) takes that shape instead.
type User struct {
	ID                  string
	FirstName, LastName *string // nil sends JSON null, as Clerk does
	Username            *string
	Email               string // primary email, verified unless EmailUnverified
	EmailUnverified     bool
	Phone               string
	ImageURL            string
	ExternalID          string // "" sends JSON null
	PublicMetadata      json.RawMessage
	LastSignInAt        time.Time // zero sends JSON null
	// CreatedAt is when Clerk created the user; zero means UpdatedAt.
	CreatedAt time.Time
	UpdatedAt time.Time // the version
}

// Str returns a pointer to s, for User's nullable fields.
func Str(s string) *string { return &s }

// Clerk returns u as Clerk's user object, the data of its user.created and
// user.updated events.
func (u User) Clerk() clerk.User {
	d := clerk.User{
		Object: "user", ID: u.ID, Username: u.Username, FirstName: u.FirstName, LastName: u.LastName,
		ImageURL: u.ImageURL, PublicMetadata: u.PublicMetadata,
		EmailAddresses: []clerk.EmailAddress{}, PhoneNumbers: []clerk.PhoneNumber{},
		CreatedAt: u.UpdatedAt.UnixMilli(), UpdatedAt: u.UpdatedAt.UnixMilli(),
		PrivateMetadata: json.RawMessage(`{}`), UnsafeMetadata: json.RawMessage(`{}`),
	}
	if !u.CreatedAt.IsZero() {
		d.CreatedAt = u.CreatedAt.UnixMilli()
	}
	if u.ExternalID != "" {
		d.ExternalID = Str(u.ExternalID)
	}
	if !u.LastSignInAt.IsZero() {
		ms := u.LastSignInAt.UnixMilli()
		d.LastSignInAt = &ms
	}
	if d.PublicMetadata == nil {
		d.PublicMetadata = json.RawMessage(`{}`)
	}
	if u.Email != "" {
		status := "verified"
		if u.EmailUnverified {
			status = "unverified"
		}
		d.PrimaryEmailAddressID = Str("idn_" + u.ID)
		d.EmailAddresses = append(d.EmailAddresses, clerk.EmailAddress{ID: "idn_" + u.ID, EmailAddress: u.Email, Verification: &clerk.Verification{Status: status, Strategy: "email_code"}})
	}
	if u.Phone != "" {
		d.PrimaryPhoneNumberID = Str("idn_phone_" + u.ID)
		d.PhoneNumbers = append(d.PhoneNumbers, clerk.PhoneNumber{ID: "idn_phone_" + u.ID, PhoneNumber: u.Phone, Verification: &clerk.Verification{Status: "verified"}})
	}
	return d
}

// instanceID is the instance_id of every event.
const instanceID = "ins_test"

// UserEvent returns the JSON body of a user.created or user.updated event
// of u.
func UserEvent(eventType string, u User) []byte {
	return event(eventType, u.Clerk(), u.UpdatedAt)
}

// UserDeletedEvent returns the JSON body of a user.deleted event.
func UserDeletedEvent(id string) []byte {
	return event("user.deleted", deletedUser(id), time.Now())
}

func deletedUser(id string) clerk.User {
	return clerk.User{Object: "user", ID: id, Deleted: true}
}

func event(eventType string, d clerk.User, at time.Time) []byte {
	b, err := json.Marshal(clerk.Event{Type: eventType, Object: "event", Timestamp: at.UnixMilli(), InstanceID: instanceID, Data: d})
	if err != nil {
		panic(err) // cannot happen: every field marshals
	}
	return b
}

// rawEvent returns the JSON body of an event whose data is user, a JSON
// object.
func rawEvent(eventType string, user []byte, atMillis int64) []byte {
	b, err := json.Marshal(struct {
		Type       string          `json:"type"`
		Object     string          `json:"object"`
		Timestamp  int64           `json:"timestamp"`
		InstanceID string          `json:"instance_id"`
		Data       json.RawMessage `json:"data"`
	}{eventType, "event", atMillis, instanceID, user})
	if err != nil {
		panic(err) // cannot happen: user is a JSON object
	}
	return b
}

// listedUser is a user as the Backend API lists it: its JSON, rendered
// once, and what the list is sorted by.
type listedUser struct {
	id               string
	created, updated int64 // ms since the epoch
	json             []byte
}

// maxUsersFile caps a users file, and so the fuzzer's inputs.
const maxUsersFile = 64 << 20

// parseUsers parses a users file: a JSON array of Clerk user objects, as
// GET /v1/users lists them and as the data of a user.created event. Each
// needs an id (unique in the file); a missing updated_at is nowMillis, a
// missing created_at its updated_at. Every other field is kept as written.
func parseUsers(data []byte, nowMillis int64) ([]listedUser, error) {
	if len(data) > maxUsersFile {
		return nil, fmt.Errorf("clerkfake: the users are more than %d bytes", maxUsersFile)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("clerkfake: the users are not a JSON array of user objects: %w", err)
	}
	if raws == nil {
		return nil, errors.New("clerkfake: the users are null, not a JSON array of user objects")
	}
	users := make([]listedUser, 0, len(raws))
	seen := make(map[string]bool, len(raws))
	now := func(string) (int64, int64) { return 0, nowMillis }
	for i, raw := range raws {
		u, err := parseUser(raw, now)
		if err != nil {
			return nil, fmt.Errorf("clerkfake: user #%d: %w", i+1, err)
		}
		if seen[u.id] {
			return nil, fmt.Errorf("clerkfake: user #%d: id %.64q is listed twice", i+1, u.id)
		}
		seen[u.id] = true
		users = append(users, u)
	}
	return users, nil
}

// parseUser parses one Clerk user object, filling in what is missing:
// object, and created_at and updated_at from defaults (a created of 0 is
// updated_at). It returns it compacted, its keys sorted.
func parseUser(raw []byte, defaults func(id string) (created, updated int64)) (listedUser, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return listedUser{}, errors.New("not a JSON object")
	}
	var u clerk.User
	if err := json.Unmarshal(raw, &u); err != nil {
		return listedUser{}, fmt.Errorf("not a Clerk user object: %w", err)
	}
	switch {
	case u.ID == "":
		return listedUser{}, errors.New(`no "id"`)
	case !validID(u.ID):
		return listedUser{}, fmt.Errorf(`"id" %.64q has a character other than a letter, a digit, "_" or "-"`, u.ID)
	case u.Object != "" && u.Object != "user":
		return listedUser{}, fmt.Errorf(`"object" is %.32q, not "user"`, u.Object)
	case u.Deleted:
		return listedUser{}, errors.New(`a deleted user ("deleted": true)`)
	case u.UpdatedAt < 0 || u.CreatedAt < 0:
		return listedUser{}, errors.New(`a negative "created_at" or "updated_at"`)
	}
	fields["object"] = json.RawMessage(`"user"`)
	if u.UpdatedAt == 0 || u.CreatedAt == 0 {
		created, updated := defaults(u.ID)
		if u.UpdatedAt == 0 {
			u.UpdatedAt = updated
			fields["updated_at"] = strconv.AppendInt(nil, u.UpdatedAt, 10)
		}
		if u.CreatedAt == 0 {
			u.CreatedAt = cmp.Or(created, u.UpdatedAt)
			fields["created_at"] = strconv.AppendInt(nil, u.CreatedAt, 10)
		}
	}
	b, err := json.Marshal(fields) // sorted keys, compacted values
	if err != nil {
		return listedUser{}, err // cannot happen: every value is valid JSON
	}
	return listedUser{id: u.ID, created: u.CreatedAt, updated: u.UpdatedAt, json: b}, nil
}

// validID reports whether id is a Clerk ID's shape ("user_2g7np7Hr..."),
// so that it can be looked up in a path as it is.
func validID(id string) bool {
	if len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// listed returns u as the Backend API lists it.
func (u User) listed() listedUser {
	d := u.Clerk()
	b, err := json.Marshal(d)
	if err != nil {
		panic(err) // cannot happen: every field marshals
	}
	return listedUser{id: u.ID, created: d.CreatedAt, updated: d.UpdatedAt, json: b}
}
