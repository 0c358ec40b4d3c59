package clerk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/metadata"
	"github.com/usersync/usersync/memstore"
)

// FuzzWebhookBody signs arbitrary bodies and delivers them to a handler
// over a memstore. The handler must answer 200, 400 or 413 (never 5xx,
// never a panic), and the store must agree with the answer:
//
//   - a 400 or 413, or a 200 for an event about something else (the
//     provider has no Organizations or Sessions), leaves the store as it
//     was: the same users and no new change in its feed;
//   - a user event that is malformed (its JSON does not fit clerk.Event,
//     no data.id, or an upsert without data.updated_at > 0) is a 400;
//   - a 200 for a user.deleted leaves the user a tombstone, and for a
//     user.created or user.updated, the user stored as the event describes
//     it (clerk.Profile, with what no store can hold kept out), or at a
//     newer version, or a tombstone it already was;
//   - no other user changes.
//
// Each input meets a store of its own, holding the same users (live ones
// and a tombstone), so that a failure replays from its input alone.
func FuzzWebhookBody(f *testing.F) {
	at := time.UnixMilli(1_700_000_000_000)
	setup := [][]byte{
		clerktest.UserEvent("user.created", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), LastName: clerktest.Str("Lovelace"), Email: "ada@example.com", UpdatedAt: at}),
		[]byte(`{"type":"user.created","data":{"id":"u","first_name":"U","username":"u","public_metadata":{"a":1},"updated_at":2}}`),
		clerktest.UserDeletedEvent("user_gone"),
	}
	for _, b := range [][]byte{
		clerktest.UserEvent("user.created", clerktest.User{ID: "user_new", FirstName: clerktest.Str("Ada"), Email: "ada@example.com", UpdatedAt: at}),
		clerktest.UserEvent("user.updated", clerktest.User{ID: "user_1", Username: clerktest.Str("ada"), UpdatedAt: at.Add(time.Second)}),
		clerktest.UserEvent("user.updated", clerktest.User{ID: "user_1", Username: clerktest.Str("ada"), UpdatedAt: at.Add(-time.Second)}),
		clerktest.UserEvent("user.updated", clerktest.User{ID: "user_gone", Username: clerktest.Str("ada"), UpdatedAt: at}),
		clerktest.UserDeletedEvent("user_1"),
		clerktest.UserDeletedEvent("user_gone"),
		clerktest.UserDeletedEvent("user_never"),
		[]byte(`{"type":"session.created","data":{"id":"sess_1"}}`),
		[]byte(`{"type":"user.created","data":{"id":"u","first_name":null,"last_name":null,"updated_at":1}}`),
		[]byte(`{"type":"user.updated","data":{"id":"u","public_metadata":null,"primary_email_address_id":"x","email_addresses":[{"id":"y"}],"updated_at":2}}`),
		[]byte(`{"type":"user.updated","data":{"id":"u","first_name":" Ada ","last_name":"L","username":"ada","image_url":"https://img.example/a","external_id":"e1",` +
			`"primary_email_address_id":"y","email_addresses":[{"id":"y","email_address":"ada@example.com","verification":{"status":"verified"}}],` +
			`"primary_phone_number_id":"p","phone_numbers":[{"id":"p","phone_number":"+15550100"}],"public_metadata":{"plan":"pro"},"last_sign_in_at":1700000000000,"updated_at":3}}`),
		// Malformed user events: data of the wrong shape, no updated_at,
		// no id, a version far in the future.
		[]byte(`{"type":"user.created","data":{"id":"user_2","first_name":42,"updated_at":3}}`),
		[]byte(`{"type":"user.created","data":{"id":"user_2","email_addresses":{"id":"x"},"updated_at":3}}`),
		[]byte(`{"type":"user.updated","data":{"id":"user_2","updated_at":"yesterday"}}`),
		[]byte(`{"type":"user.updated","data":{"id":"user_2"}}`),
		[]byte(`{"type":"user.deleted","data":{"deleted":true}}`),
		[]byte(`{"type":"user.created","data":{"id":"user_2","first_name":"Eve","updated_at":32503680000000}}`),
		[]byte(`{"type":"user.created","data":{"id":"user_2","first_name":"Eve\u0000","updated_at":4}}`),
		[]byte(`{"type":"organization.created","data":{"id":"org_1","name":"Acme","updated_at":5}}`),
		[]byte(`not json`),
		[]byte(``),
	} {
		f.Add(b)
	}
	secret := clerktest.NewWebhookSender(f).Secret
	f.Fuzz(func(t *testing.T, body []byte) {
		ctx := context.Background()
		sender := clerktest.NewWebhookSenderWithSecret(t, secret)
		store := memstore.New()
		h, _ := newWebhook(t, store, sender, nil)
		for _, b := range setup {
			if w := serve(h, sender.Request("/", b)); w.Code != 200 {
				t.Fatalf("setup %s: status %d", b, w.Code)
			}
		}
		changes, err := store.Changes(ctx, 0, 1000)
		if err != nil || len(changes) != len(setup) {
			t.Fatalf("setup: changes %v, %v", changes, err)
		}
		seq := changes[len(changes)-1].Seq

		var ev clerk.Event
		fits := json.Unmarshal(body, &ev) == nil // the type survives a data of the wrong shape
		user := ev.Type == "user.created" || ev.Type == "user.updated" || ev.Type == "user.deleted"
		wellFormed := fits && ev.Data.ID != "" && (ev.Type == "user.deleted" || ev.Data.UpdatedAt > 0)
		key := usersync.TokenIdentifier(clerkIssuer, ev.Data.ID)
		before := usersByID(t, store)
		prev, prevErr := store.GetByTokenIdentifier(ctx, key)

		w := serve(h, sender.Request("/", body))

		after := usersByID(t, store)
		changes, err = store.Changes(ctx, seq, 1000)
		if err != nil {
			t.Fatal(err)
		}
		unchanged := func() {
			t.Helper()
			if len(changes) > 0 || !reflect.DeepEqual(before, after) {
				t.Fatalf("status %d (%s) changed the store: %d changes, %d users before, %d after", w.Code, strings.TrimSpace(w.Body.String()), len(changes), len(before), len(after))
			}
		}
		switch {
		case w.Code != 200 && w.Code != 400 && w.Code != 413:
			t.Fatalf("status %d for %q", w.Code, body)
		case w.Code != 200:
			unchanged()
			return
		case user && !wellFormed:
			t.Fatalf("status 200 (%s) for a malformed user event %q", strings.TrimSpace(w.Body.String()), body)
		case !user:
			unchanged()
			return
		}

		// A 200 for a well-formed user event: one change at most, of this
		// user (a tombstone's ID is not looked up: that of the user live
		// before, if any), and no other user changed.
		u, err := store.GetByTokenIdentifier(ctx, key)
		id := u.ID
		switch {
		case errors.Is(err, usersync.ErrDeleted):
			if ev.Type != "user.deleted" && !errors.Is(prevErr, usersync.ErrDeleted) {
				t.Fatalf("%s answered 200 (%s), and the user is a tombstone", ev.Type, strings.TrimSpace(w.Body.String()))
			}
			id = prev.ID // "" unless the user was live
		case err != nil:
			t.Fatalf("%s answered 200 (%s), and the user is not stored: %v", ev.Type, strings.TrimSpace(w.Body.String()), err)
		case ev.Type == "user.deleted":
			t.Fatalf("user.deleted answered 200 (%s), and the user is live", strings.TrimSpace(w.Body.String()))
		default:
			checkDescribed(t, &ev.Data, u, prev, prevErr)
		}
		if len(changes) > 1 || len(changes) == 1 && id != "" && changes[0].UserID != id {
			t.Fatalf("%s of %q made changes %+v, want at most one, of user %q", ev.Type, ev.Data.ID, changes, id)
		}
		delete(before, id)
		delete(after, id)
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%s of %q changed other users", ev.Type, ev.Data.ID)
		}
	})
}

// usersByID returns every live user of the store.
func usersByID(t *testing.T, store *memstore.Store) map[string]usersync.User {
	t.Helper()
	users, err := store.List(context.Background(), "", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]usersync.User, len(users))
	for _, u := range users {
		m[u.ID] = u
	}
	return m
}

// checkDescribed checks that u, stored after a user.created or
// user.updated of data answered 200, is what data describes, or newer.
// prev and prevErr are the lookup of the user before the event.
func checkDescribed(t *testing.T, data *clerk.User, u, prev usersync.User, prevErr error) {
	t.Helper()
	version := usersync.Version(data.UpdatedAt)
	if u.Version < version {
		t.Fatalf("stored version %d, older than the event's %d", u.Version, version)
	}
	isNew := errors.Is(prevErr, usersync.ErrNotFound)
	if !isNew && (prevErr != nil || prev.Version >= version) {
		// Every field the event carries was as new before: the event may
		// have changed nothing, or only fields written at older versions.
		return
	}
	// Every field was older than the event's, or there was no user: each
	// field the event carries is written, unless no store can hold its
	// value (then it is kept, or empty for a new user).
	if u.Version != version {
		t.Fatalf("stored version %d, want the event's %d", u.Version, version)
	}
	want, carried := clerk.Profile(data)
	keep := func(f usersync.Fields, storable bool) bool {
		return carried&f == 0 || !storable
	}
	for _, tf := range []struct {
		field usersync.Fields
		name  string
		max   int
		get   func(*usersync.Profile) string
	}{
		{usersync.FieldName, "name", 16 << 10, func(p *usersync.Profile) string { return p.Name }},
		{usersync.FieldGivenName, "given_name", 16 << 10, func(p *usersync.Profile) string { return p.GivenName }},
		{usersync.FieldFamilyName, "family_name", 16 << 10, func(p *usersync.Profile) string { return p.FamilyName }},
		{usersync.FieldEmail, "email", 16 << 10, func(p *usersync.Profile) string { return p.Email }},
		{usersync.FieldPictureURL, "picture_url", 16 << 10, func(p *usersync.Profile) string { return p.PictureURL }},
		{usersync.FieldUsername, "username", 16 << 10, func(p *usersync.Profile) string { return p.Username }},
		{usersync.FieldPhoneNumber, "phone_number", 16 << 10, func(p *usersync.Profile) string { return p.PhoneNumber }},
		{usersync.FieldExternalID, "external_id", 255, func(p *usersync.Profile) string { return p.ExternalID }},
	} {
		v := tf.get(&want)
		expect := v
		if keep(tf.field, len(v) <= tf.max && utf8.ValidString(v) && !strings.Contains(v, "\x00")) {
			expect = tf.get(&prev.Profile) // the zero Profile for a new user
		}
		if got := tf.get(&u.Profile); got != expect {
			t.Fatalf("stored %s %q, want %q (event: %q)", tf.name, got, expect, v)
		}
	}
	if carried&usersync.FieldEmail != 0 && u.Email == want.Email && u.EmailVerified != want.EmailVerified {
		t.Fatalf("stored email_verified %v, want %v", u.EmailVerified, want.EmailVerified)
	}
	at := want.LastSignInAt
	expectAt := at
	if keep(usersync.FieldLastSignInAt, at.IsZero() || at.Unix() >= 0 && at.Unix() <= 253402300799) {
		expectAt = prev.LastSignInAt
	}
	if !u.LastSignInAt.Equal(expectAt) {
		t.Fatalf("stored last_sign_in_at %v, want %v", u.LastSignInAt, expectAt)
	}
	m, err := metadata.Normalize(want.Metadata)
	expectM := m
	if keep(usersync.FieldMetadata, err == nil) {
		expectM = prev.Metadata
	}
	if !bytes.Equal(u.Metadata, expectM) {
		t.Fatalf("stored metadata %s, want %s (event: %s)", u.Metadata, expectM, want.Metadata)
	}
}

// FuzzWebhookHeaders feeds arbitrary svix headers: nothing but a valid
// signature passes, and nothing panics.
func FuzzWebhookHeaders(f *testing.F) {
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	f.Add("msg_1", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v2,x v1a,y")
	f.Add("", "", "")
	f.Add("msg", "-1", "v1")
	f.Add("msg", "99999999999999999999", ",,,, v1,")
	f.Add("msg", "1614265330.5", "v1,"+strings.Repeat("A", 1000))
	p, err := clerk.New(clerk.Config{
		WebhookSecrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, Issuer: clerkIssuer,
		Now: func() time.Time { return time.Unix(1614265330, 0) },
	})
	if err != nil {
		f.Fatal(err)
	}
	s, err := usersync.New(usersync.Config{Store: memstore.New(), Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	h, err := usersync.NewWebhookHandler(s, p, usersync.WebhookConfig{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	const body = `{"test": 2432232314}`
	f.Fuzz(func(t *testing.T, id, ts, sig string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header["Svix-Id"] = []string{id}
		r.Header["Svix-Timestamp"] = []string{ts}
		r.Header["Svix-Signature"] = []string{sig}
		w := serve(h, r)
		valid := id == "msg_p5jXN8AQM9LWM0D4loKWxJek" && ts == "1614265330" && strings.Contains(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
		if w.Code != 401 && !valid {
			t.Fatalf("accepted id=%q ts=%q sig=%q", id, ts, sig)
		}
		if w.Code != 200 && w.Code != 401 && w.Code != 400 {
			t.Fatalf("status %d", w.Code)
		}
	})
}
