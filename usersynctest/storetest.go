package usersynctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sessions"
)

// TestStore checks that the stores newStore makes follow the usersync.Store
// contract, like testing/fstest.TestFS and testing/slogtest.Run: each
// subtest gets a fresh, empty store and is named for the rule it checks.
// Call it from a test of the store's package:
//
//	func TestConformance(t *testing.T) {
//		usersynctest.TestStore(t, func(t *testing.T) usersync.Store { return memstore.New() })
//	}
//
// A store that also implements feed.Store (a change feed), lease.Store
// (leases), orgs.Store (organizations and memberships) or sessions.Store
// (ended sessions) is checked against those contracts too, in the
// subtests named Feed/..., Leases/..., Orgs/... and Sessions/...; for a
// store that does not, they are skipped, saying which interface it lacks.
func TestStore(t *testing.T, newStore func(t *testing.T) usersync.Store) {
	t.Helper()
	for _, c := range slices.Concat(storeCases, orgCases, sessionCases) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &storeFixture{t: t, s: newStore(t), newStore: newStore}
			f.feed, _ = f.s.(feed.Store)
			f.leases, _ = f.s.(lease.Store)
			f.orgs, _ = f.s.(orgs.Store)
			f.sessions, _ = f.s.(sessions.Store)
			switch {
			case strings.HasPrefix(c.name, "Feed/") && f.feed == nil:
				t.Skipf("%T does not implement feed.Store: it keeps no change feed", f.s)
			case strings.HasPrefix(c.name, "Leases/") && f.leases == nil:
				t.Skipf("%T does not implement lease.Store: it keeps no leases", f.s)
			case strings.HasPrefix(c.name, "Orgs/") && f.orgs == nil:
				t.Skipf("%T does not implement orgs.Store: it keeps no organizations", f.s)
			case strings.HasPrefix(c.name, "Sessions/") && f.sessions == nil:
				t.Skipf("%T does not implement sessions.Store: it keeps no ended sessions", f.s)
			}
			c.run(t, f)
		})
	}
}

// storeFixture is the state of one conformance subtest.
type storeFixture struct {
	t        *testing.T
	s        usersync.Store
	feed     feed.Store     // s, if it has a change feed; else nil
	leases   lease.Store    // s, if it keeps leases; else nil
	orgs     orgs.Store     // s, if it keeps organizations; else nil
	sessions sessions.Store // s, if it keeps ended sessions; else nil
	newStore func(t *testing.T) usersync.Store
	ids      int
}

var (
	bg    = context.Background()
	epoch = time.UnixMilli(1_700_000_000_000).UTC()
)

// The size limits of the Store contract (see usersync.Write.Validate).
const (
	maxIDLen              = 128
	maxTokenIdentifierLen = 512
	maxSubjectLen         = 255
	maxFieldLen           = 16 << 10
)

func (f *storeFixture) nextID() string {
	f.ids++
	return fmt.Sprintf("id-%08d", f.ids)
}

// write builds a write for subject sub at version v carrying fields.
func (f *storeFixture) write(sub string, v usersync.Version, fields usersync.Fields, p usersync.Profile) usersync.Write {
	return usersync.Write{
		ID:              f.nextID(),
		TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", sub),
		Issuer:          "https://issuer.test",
		Subject:         sub,
		Version:         v,
		Fields:          fields,
		Profile:         p,
		At:              epoch.Add(time.Duration(f.ids) * time.Second),
	}
}

func (f *storeFixture) upsert(w usersync.Write, want usersync.Outcome) usersync.User {
	f.t.Helper()
	u, got, err := f.s.Upsert(bg, w)
	if err != nil {
		f.t.Fatalf("Upsert(%s v%d): %v", w.Subject, w.Version, err)
	}
	if got != want {
		f.t.Fatalf("Upsert(%s v%d) outcome = %v, want %v", w.Subject, w.Version, got, want)
	}
	return u
}

func (f *storeFixture) tombstone(sub string) usersync.Write {
	return usersync.Write{
		ID:              f.nextID(),
		TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", sub),
		Issuer:          "https://issuer.test",
		Subject:         sub,
		At:              epoch.Add(time.Duration(f.ids) * time.Second),
	}
}

func (f *storeFixture) delete(sub string, want usersync.Outcome) usersync.User {
	f.t.Helper()
	u, got, err := f.s.Delete(bg, f.tombstone(sub))
	if err != nil {
		f.t.Fatalf("Delete(%s): %v", sub, err)
	}
	if got != want {
		f.t.Fatalf("Delete(%s) outcome = %v, want %v", sub, got, want)
	}
	return u
}

func (f *storeFixture) byToken(sub string) (usersync.User, error) {
	return f.s.GetByTokenIdentifier(bg, usersync.TokenIdentifier("https://issuer.test", sub))
}

func (f *storeFixture) mustGet(sub string) usersync.User {
	f.t.Helper()
	u, err := f.byToken(sub)
	if err != nil {
		f.t.Fatalf("GetByTokenIdentifier(%s): %v", sub, err)
	}
	return u
}

// full returns a profile with every field set, from name.
func full(name string) usersync.Profile { return fullProfile(name) }

// sameProfile fails the test if got's profile differs from want.
func sameProfile(t *testing.T, what string, got, want usersync.Profile) {
	t.Helper()
	if diff := profileDiff(got, want); diff != "" {
		t.Fatalf("%s: profile differs in %s: got %+v, want %+v", what, diff, got, want)
	}
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if got.UnixMilli() != want.UnixMilli() {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// storeCase is a rule of the contract and its check. The checks of the
// rules of feed.Store are named Feed/..., those of lease.Store Leases/...:
// they run only on stores that implement the interface.
type storeCase struct {
	name string
	run  func(t *testing.T, f *storeFixture)
}

var storeCases = []storeCase{
	{"Upsert/creates a user with the write's ID, every profile value and its version", func(t *testing.T, f *storeFixture) {
		w := f.write("alice", 10, usersync.AllFields, full("alice"))
		u := f.upsert(w, usersync.Created)
		if u.ID != w.ID || u.TokenIdentifier != w.TokenIdentifier || u.Issuer != w.Issuer || u.Subject != w.Subject {
			t.Fatalf("created %+v from %+v", u, w)
		}
		sameProfile(t, "created", u.Profile, w.Profile)
		sameTime(t, "CreatedAt", u.CreatedAt, w.At)
		sameTime(t, "UpdatedAt", u.UpdatedAt, w.At)
		if u.Version != 10 || !u.DeletedAt.IsZero() {
			t.Fatalf("Version = %d, DeletedAt = %v; want 10 and zero", u.Version, u.DeletedAt)
		}
		got, err := f.s.Get(bg, w.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		sameProfile(t, "Get", got.Profile, w.Profile)
		sameProfile(t, "GetByTokenIdentifier", f.mustGet("alice").Profile, w.Profile)
	}},
	{"Upsert/a newer version replaces the fields it carries", func(t *testing.T, f *storeFixture) {
		created := f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		w := f.write("alice", 11, usersync.AllFields, full("alicia"))
		u := f.upsert(w, usersync.Updated)
		sameProfile(t, "updated", u.Profile, full("alicia"))
		if u.ID != created.ID || u.Version != 11 {
			t.Fatalf("updated ID %q version %d, want %q and 11", u.ID, u.Version, created.ID)
		}
		sameTime(t, "CreatedAt", u.CreatedAt, created.CreatedAt)
		sameTime(t, "UpdatedAt", u.UpdatedAt, w.At)
		sameProfile(t, "stored", f.mustGet("alice").Profile, full("alicia"))
	}},
	{"Upsert/a write carrying the stored user's own ID updates them", func(t *testing.T, f *storeFixture) {
		u := f.upsert(f.write("alice", 1, usersync.AllFields, full("alice")), usersync.Created)
		w := f.write("alice", 2, usersync.FieldName, usersync.Profile{Name: "Alicia"})
		w.ID = u.ID
		if got := f.upsert(w, usersync.Updated); got.Name != "Alicia" || got.ID != u.ID {
			t.Fatalf("stored %+v", got)
		}
		d := f.tombstone("alice")
		d.ID = u.ID
		if _, o, err := f.s.Delete(bg, d); err != nil || o != usersync.Deleted {
			t.Fatalf("Delete = %v, %v; want Deleted", o, err)
		}
	}},
	{"Upsert/an equal version is stale and returns the stored user", func(t *testing.T, f *storeFixture) {
		created := f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		u := f.upsert(f.write("alice", 10, usersync.AllFields, full("mallory")), usersync.Stale)
		sameProfile(t, "returned", u.Profile, full("alice"))
		sameTime(t, "UpdatedAt", u.UpdatedAt, created.UpdatedAt)
		if u.ID != created.ID {
			t.Fatalf("stale write returned ID %q, want %q", u.ID, created.ID)
		}
		sameProfile(t, "stored", f.mustGet("alice").Profile, full("alice"))
	}},
	{"Upsert/an older version is stale and changes nothing", func(t *testing.T, f *storeFixture) {
		f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		u := f.upsert(f.write("alice", 9, usersync.AllFields, full("old")), usersync.Stale)
		sameProfile(t, "returned", u.Profile, full("alice"))
		if u.Version != 10 {
			t.Fatalf("Version = %d, want 10", u.Version)
		}
		sameProfile(t, "stored", f.mustGet("alice").Profile, full("alice"))
	}},
	{"Upsert/fields a write does not carry never wipe stored values", func(t *testing.T, f *storeFixture) {
		f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		u := f.upsert(f.write("alice", 11, usersync.FieldName, usersync.Profile{Name: "Alice B"}), usersync.Updated)
		want := full("alice")
		want.Name = "Alice B"
		sameProfile(t, "after a name-only write", u.Profile, want)
		sameProfile(t, "stored", f.mustGet("alice").Profile, want)
	}},
	{"Upsert/a write carrying no fields changes nothing", func(t *testing.T, f *storeFixture) {
		f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		u := f.upsert(f.write("alice", 20, 0, usersync.Profile{Name: "ignored"}), usersync.Stale)
		sameProfile(t, "stored", u.Profile, full("alice"))
	}},
	{"Upsert/values of fields not carried are defaults used only on creation", func(t *testing.T, f *storeFixture) {
		u := f.upsert(f.write("alice", 10, 0, usersync.Profile{Name: "Anonymous"}), usersync.Created)
		if u.Name != "Anonymous" {
			t.Fatalf("created name %q, want the default", u.Name)
		}
		// A later write carrying the name replaces the default even with
		// an older version: the default was never versioned.
		u = f.upsert(f.write("alice", 5, usersync.FieldName, usersync.Profile{Name: "Alice"}), usersync.Updated)
		if u.Name != "Alice" {
			t.Fatalf("name %q, want Alice", u.Name)
		}
	}},
	{"Upsert/each field keeps the newest value written to it, whatever the order", func(t *testing.T, f *storeFixture) {
		// A token (name only, newer) and a webhook (everything, older) in
		// both orders end equal.
		for _, order := range [][2]int{{0, 1}, {1, 0}} {
			sub := fmt.Sprintf("u%d%d", order[0], order[1])
			writes := []usersync.Write{
				f.write(sub, 20, usersync.FieldName, usersync.Profile{Name: "From Token"}),
				f.write(sub, 10, usersync.AllFields, full("webhook")),
			}
			for _, i := range order {
				if _, _, err := f.s.Upsert(bg, writes[i]); err != nil {
					t.Fatal(err)
				}
			}
			want := full("webhook")
			want.Name = "From Token"
			u := f.mustGet(sub)
			sameProfile(t, fmt.Sprintf("order %v", order), u.Profile, want)
			if u.Version != 20 {
				t.Fatalf("order %v: Version = %d, want 20", order, u.Version)
			}
		}
	}},
	{"Upsert/email_verified belongs to the address it came with", func(t *testing.T, f *storeFixture) {
		const email, flag = usersync.FieldEmail, usersync.FieldEmailVerified
		p := func(addr string, verified bool) usersync.Profile {
			return usersync.Profile{Email: addr, EmailVerified: verified}
		}
		verified := func(sub string) bool { f.t.Helper(); return f.mustGet(sub).EmailVerified }
		// A new address without a flag of its own is not verified; the
		// same address without one keeps it; the old address, back, has
		// its flag again.
		f.upsert(f.write("ada", 10, email|flag, p("ada@example.com", true)), usersync.Created)
		f.upsert(f.write("ada", 20, email, p("ada@example.com", false)), usersync.Updated)
		if !verified("ada") {
			t.Fatal("the same address without a flag lost its flag")
		}
		f.upsert(f.write("ada", 30, email, p("ada@new.example", false)), usersync.Updated)
		if verified("ada") {
			t.Fatal("a new address without a flag inherited the old address's flag")
		}
		f.upsert(f.write("ada", 40, email, p("ada@example.com", false)), usersync.Updated)
		if !verified("ada") {
			t.Fatal("the verified address, back, lost its flag")
		}
		// The comparison is byte for byte.
		f.upsert(f.write("ada", 50, email, p("Ada@example.com", false)), usersync.Updated)
		if verified("ada") {
			t.Fatal("another spelling of the address inherited its flag")
		}
		f.upsert(f.write("ada", 55, email, p("ada@example.com ", false)), usersync.Updated)
		if verified("ada") {
			t.Fatal("the address with a trailing space inherited its flag")
		}
		// A flag without an address holds for whatever address is stored.
		f.upsert(f.write("ada", 60, flag, p("", true)), usersync.Updated)
		if !verified("ada") {
			t.Fatal("a flag without an address did not apply")
		}

		// Every order of a flagged address and a flag-less one reads the
		// same: the flag holds if it came with the newest address.
		for i, tc := range []struct {
			flagged, bare string // the address of the flagged write (v90) and of the bare one (v100)
			want          bool
		}{
			{"b@example.com", "b@example.com", true},  // the same address: the flag holds
			{"c@example.com", "b@example.com", false}, // the flag of another address
		} {
			writes := []usersync.Write{
				f.write("", 90, email|flag, p(tc.flagged, true)),
				f.write("", 100, email, p(tc.bare, false)),
			}
			for order, ws := range [][]usersync.Write{writes, {writes[1], writes[0]}} {
				sub := fmt.Sprintf("carol-%d-%d", i, order)
				f.upsert(f.write(sub, 50, email|flag, p("a@example.com", true)), usersync.Created)
				for _, w := range ws {
					w = f.write(sub, w.Version, w.Fields, w.Profile)
					if _, _, err := f.s.Upsert(bg, w); err != nil {
						t.Fatal(err)
					}
				}
				if u := f.mustGet(sub); u.Email != tc.bare || u.EmailVerified != tc.want {
					t.Fatalf("%s, order %d: %q verified %v, want %q verified %v", sub, order, u.Email, u.EmailVerified, tc.bare, tc.want)
				}
			}
		}
	}},
	{"Upsert/identity fields never change", func(t *testing.T, f *storeFixture) {
		created := f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		w := f.write("alice", 11, usersync.AllFields, full("alicia")) // with another ID and time
		u := f.upsert(w, usersync.Updated)
		if u.ID != created.ID || u.Issuer != created.Issuer || u.Subject != created.Subject || u.TokenIdentifier != created.TokenIdentifier {
			t.Fatalf("identity changed: %+v, was %+v", u, created)
		}
		sameTime(t, "CreatedAt", u.CreatedAt, created.CreatedAt)
	}},
	{"Upsert/every profile field is stored, read back and versioned on its own", func(t *testing.T, f *storeFixture) {
		// Every field of usersync.Profile, found by reflection: a store
		// that drops or mixes up a field fails here, whatever its name.
		f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		want := full("alice")
		// Every field of newer differs from alice's, booleans included.
		newer := boolsOf(full("newer"), flipBools(want))
		v := usersync.Version(10)
		for field := usersync.Fields(1); field&usersync.AllFields != 0; field <<= 1 {
			v++
			u := f.upsert(f.write("alice", v, field, newer), usersync.Updated)
			want.CopyFields(&newer, field)
			sameProfile(t, fmt.Sprintf("after writing field %#x", field), u.Profile, want)
			sameProfile(t, fmt.Sprintf("read back after writing field %#x", field), f.mustGet("alice").Profile, want)
			// The field now holds version v; the others still hold 10.
			f.upsert(f.write("alice", v, field, full("same version")), usersync.Stale)
		}
		for field := usersync.Fields(1); field&usersync.AllFields != 0; field <<= 1 {
			// An older write of any field is stale: every field was written
			// at 11 or later.
			f.upsert(f.write("alice", 11, field, full("old")), usersync.Stale)
		}
		sameProfile(t, "in the end", f.mustGet("alice").Profile, newer)
	}},
	{"Upsert/metadata round-trips as JSON and an empty profile is kept empty", func(t *testing.T, f *storeFixture) {
		p := usersync.Profile{Name: "n", Metadata: json.RawMessage(`{"a":[1,2,{"b":"ü\"x"}],"c":null}`)}
		f.upsert(f.write("alice", 1, usersync.AllFields, p), usersync.Created)
		sameProfile(t, "metadata", f.mustGet("alice").Profile, p)
		f.upsert(f.write("bob", 1, usersync.AllFields, usersync.Profile{}), usersync.Created)
		sameProfile(t, "empty", f.mustGet("bob").Profile, usersync.Profile{})
	}},
	{"Upsert/values at the size limits are stored whole", func(t *testing.T, f *storeFixture) {
		sub := strings.Repeat("s", maxSubjectLen)
		w := f.write("x", 1, usersync.AllFields, usersync.Profile{Name: strings.Repeat("ü", maxFieldLen/2), Email: "e"})
		w.Issuer = "https://" + strings.Repeat("i", maxTokenIdentifierLen-len(sub)-1-len("https://"))
		w.Subject, w.TokenIdentifier, w.ID = sub, usersync.TokenIdentifier(w.Issuer, sub), strings.Repeat("i", maxIDLen)
		if len(w.TokenIdentifier) != maxTokenIdentifierLen {
			t.Fatalf("test bug: token identifier of %d bytes", len(w.TokenIdentifier))
		}
		f.upsert(w, usersync.Created)
		u, err := f.s.GetByTokenIdentifier(bg, w.TokenIdentifier)
		if err != nil || u.Subject != sub || u.Name != w.Profile.Name || u.ID != w.ID {
			t.Fatalf("stored %d-byte name, %d-byte subject: %v", len(u.Name), len(u.Subject), err)
		}
	}},
	{"Upsert/a malformed write is rejected with ErrInvalid and stores nothing", func(t *testing.T, f *storeFixture) {
		bad := map[string]func(w *usersync.Write){
			"empty token identifier":              func(w *usersync.Write) { w.TokenIdentifier = "" },
			"token identifier of another subject": func(w *usersync.Write) { w.TokenIdentifier = usersync.TokenIdentifier(w.Issuer, "mallory") },
			"issuer with a trailing slash":        func(w *usersync.Write) { w.Issuer += "/" },
			"empty ID":                            func(w *usersync.Write) { w.ID = "" },
			"fields at version 0":                 func(w *usersync.Write) { w.Version = 0 },
			"no time":                             func(w *usersync.Write) { w.At = time.Time{} },
			"invalid metadata":                    func(w *usersync.Write) { w.Profile.Metadata = json.RawMessage(`{"a":`) },
			"negative version":                    func(w *usersync.Write) { w.Version = -1 },
			"NUL in a name":                       func(w *usersync.Write) { w.Profile.Name = "a\x00b" },
			"subject too long":                    func(w *usersync.Write) { w.Subject = strings.Repeat("s", 256); w.TokenIdentifier = "x|" + w.Subject },
			"token id too long": func(w *usersync.Write) {
				w.Issuer = "https://" + strings.Repeat("t", 505)
				w.TokenIdentifier = usersync.TokenIdentifier(w.Issuer, w.Subject)
			},
			"name too long": func(w *usersync.Write) { w.Profile.Name = strings.Repeat("n", 16<<10+1) },
			"NUL in the subject": func(w *usersync.Write) {
				w.Subject = "a\x00"
				w.TokenIdentifier = usersync.TokenIdentifier(w.Issuer, w.Subject)
			},
			"invalid UTF-8 in the subject": func(w *usersync.Write) {
				w.Subject = "a\xff"
				w.TokenIdentifier = usersync.TokenIdentifier(w.Issuer, w.Subject)
			},
			"invalid UTF-8 in a name": func(w *usersync.Write) { w.Profile.Name = "Ad\xffa" },
			"NUL in metadata":         func(w *usersync.Write) { w.Profile.Metadata = json.RawMessage(`{"a":"\u0000"}`) },
		}
		for name, mutate := range bad {
			w := f.write("alice", 1, usersync.AllFields, full("alice"))
			mutate(&w)
			if _, _, err := f.s.Upsert(bg, w); !errors.Is(err, usersync.ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			}
		}
		if n, err := f.s.Count(bg); err != nil || n != 0 {
			t.Fatalf("Count = %d, %v; want 0", n, err)
		}
	}},
	{"Upsert/a new user whose ID another user has fails and changes nothing", func(t *testing.T, f *storeFixture) {
		alice := f.upsert(f.write("alice", 1, usersync.AllFields, full("alice")), usersync.Created)
		w := f.write("bob", 2, usersync.AllFields, full("bob"))
		w.ID = alice.ID
		if _, _, err := f.s.Upsert(bg, w); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("Upsert with a taken ID: %v, want ErrInvalid", err)
		}
		ts := f.tombstone("carol")
		ts.ID = alice.ID
		if _, _, err := f.s.Delete(bg, ts); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("Delete with a taken ID: %v, want ErrInvalid", err)
		}
		u := f.mustGet("alice")
		sameProfile(t, "alice", u.Profile, full("alice"))
		if u.ID != alice.ID || !u.DeletedAt.IsZero() {
			t.Fatalf("alice changed: %+v", u)
		}
		if _, err := f.byToken("bob"); !errors.Is(err, usersync.ErrNotFound) {
			t.Fatalf("bob was stored: %v", err)
		}
	}},
	{"Keys/compare byte for byte: spaces and case make other users", func(t *testing.T, f *storeFixture) {
		// MySQL's PAD SPACE collations make "alice" equal "alice  ": a
		// store must not.
		subjects := []string{"alice", "alice ", "alice  ", " alice", "Alice", "ALICE", "alice\t"}
		ids := map[string]string{}
		for i, sub := range subjects {
			w := f.write(sub, 10, usersync.AllFields, full(fmt.Sprint("p", i)))
			w.ID = "id-alice" + strings.Repeat(" ", i) // IDs that differ in trailing spaces only
			u := f.upsert(w, usersync.Created)
			ids[sub] = u.ID
		}
		for i, sub := range subjects {
			u := f.mustGet(sub)
			sameProfile(t, fmt.Sprintf("subject %q", sub), u.Profile, full(fmt.Sprint("p", i)))
			got, err := f.s.Get(bg, ids[sub])
			if err != nil || got.Subject != sub {
				t.Fatalf("Get(%q) = subject %q, %v; want %q", ids[sub], got.Subject, err, sub)
			}
		}
		m, err := f.s.GetMany(bg, []string{"id-alice", "id-alice ", "ID-ALICE", "id-alice   \t"})
		if err != nil || len(m) != 2 || m["id-alice"].Subject != "alice" || m["id-alice "].Subject != "alice " {
			t.Fatalf("GetMany = %v, %v; want exactly id-alice and \"id-alice \"", m, err)
		}
		if _, err := f.byToken("alice   "); !errors.Is(err, usersync.ErrNotFound) {
			t.Fatalf(`GetByTokenIdentifier("...|alice   "): err = %v, want ErrNotFound`, err)
		}
		f.delete("alice   ", usersync.Deleted) // three spaces: a key never stored
		sameProfile(t, "alice after deleting \"alice   \"", f.mustGet("alice").Profile, full("p0"))
		if n, err := f.s.Count(bg); err != nil || n != len(subjects) {
			t.Fatalf("Count = %d, %v; want %d", n, err, len(subjects))
		}
	}},
	{"Keys/lookups of malformed keys are not found, and fail nothing else", func(t *testing.T, f *storeFixture) {
		a := f.upsert(f.write("alice", 1, usersync.AllFields, full("alice")), usersync.Created)
		for _, bad := range []string{"x\x00y", "\xff", "id\xc3", a.ID + "\x00"} {
			if _, err := f.s.Get(bg, bad); !errors.Is(err, usersync.ErrNotFound) {
				t.Errorf("Get(%q): err = %v, want ErrNotFound", bad, err)
			}
			if _, err := f.s.GetByTokenIdentifier(bg, "https://issuer.test|"+bad); !errors.Is(err, usersync.ErrNotFound) {
				t.Errorf("GetByTokenIdentifier(%q): err = %v, want ErrNotFound", bad, err)
			}
			if _, err := f.s.List(bg, bad, 10); !errors.Is(err, usersync.ErrInvalid) {
				t.Errorf("List(after %q): err = %v, want ErrInvalid", bad, err)
			}
		}
		m, err := f.s.GetMany(bg, []string{"x\x00y", a.ID, "\xff"})
		if err != nil || len(m) != 1 || m[a.ID].ID != a.ID {
			t.Fatalf("GetMany with malformed IDs beside a good one = %v, %v", m, err)
		}
	}},
	{"Upsert/metadata is stored in a form every store holds", func(t *testing.T, f *storeFixture) {
		cases := []struct {
			name, in, want string // want "" for ErrInvalid
		}{
			{"lone surrogate escape", `{"a":"x\ud800y"}`, `{"a":"x\ufffdy"}`},
			{"escaped backslash before u0000 (no NUL)", `{"a":"\\u0000"}`, `{"a":"\\u0000"}`},
			{"surrogate pair", `{"smile":"\ud83d\ude00"}`, `{"smile":"😀"}`},
			{"31 levels", strings.Repeat(`[`, 31) + strings.Repeat(`]`, 31), strings.Repeat(`[`, 31) + strings.Repeat(`]`, 31)},
			{"a real NUL", `{"a":"\u0000"}`, ""},
			{"a NUL in a key", `{"\u0000":1}`, ""},
			{"a number out of range", `{"n":1e200000}`, ""},
			{"32 levels", strings.Repeat(`[`, 32) + strings.Repeat(`]`, 32), ""},
			{"two values", `{} {}`, ""},
		}
		for i, c := range cases {
			w := f.write(fmt.Sprint("m", i), 1, usersync.AllFields, usersync.Profile{Name: "n", Metadata: json.RawMessage(c.in)})
			u, _, err := f.s.Upsert(bg, w)
			if c.want == "" {
				if !errors.Is(err, usersync.ErrInvalid) {
					t.Errorf("%s: err = %v, want ErrInvalid", c.name, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			stored := f.mustGet(fmt.Sprint("m", i))
			if !jsonEqual(u.Metadata, json.RawMessage(c.want)) || !jsonEqual(stored.Metadata, json.RawMessage(c.want)) {
				t.Errorf("%s: stored %s (returned %s), want %s", c.name, stored.Metadata, u.Metadata, c.want)
			}
		}
	}},
	{"Delete/clears the personal fields and keeps ID, key, external ID and creation time", func(t *testing.T, f *storeFixture) {
		created := f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		ts := f.tombstone("alice")
		u, o, err := f.s.Delete(bg, ts)
		if err != nil || o != usersync.Deleted {
			t.Fatalf("Delete = %v, %v; want Deleted", o, err)
		}
		if u.ID != created.ID || u.TokenIdentifier != created.TokenIdentifier || u.Subject != "alice" {
			t.Fatalf("tombstone %+v lost the identity of %+v", u, created)
		}
		// The external ID is the app's key of the person, which it needs
		// to find its own rows of a deleted user.
		sameProfile(t, "tombstone", u.Profile, usersync.Profile{ExternalID: created.ExternalID})
		sameTime(t, "DeletedAt", u.DeletedAt, ts.At)
		sameTime(t, "CreatedAt", u.CreatedAt, created.CreatedAt)
	}},
	{"Delete/lookups of a deleted user report ErrDeleted, of an unknown one ErrNotFound", func(t *testing.T, f *storeFixture) {
		created := f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		f.delete("alice", usersync.Deleted)
		if _, err := f.byToken("alice"); !errors.Is(err, usersync.ErrDeleted) || !errors.Is(err, usersync.ErrNotFound) {
			t.Errorf("GetByTokenIdentifier err = %v, want ErrDeleted (wrapping ErrNotFound)", err)
		}
		if _, err := f.s.Get(bg, created.ID); !errors.Is(err, usersync.ErrDeleted) {
			t.Errorf("Get err = %v, want ErrDeleted", err)
		}
		if _, err := f.byToken("never"); !errors.Is(err, usersync.ErrNotFound) || errors.Is(err, usersync.ErrDeleted) {
			t.Errorf("GetByTokenIdentifier of a key never stored: err = %v, want ErrNotFound only", err)
		}
		if m, err := f.s.GetMany(bg, []string{created.ID}); err != nil || len(m) != 0 {
			t.Errorf("GetMany = %v, %v; want empty", m, err)
		}
		if l, err := f.s.List(bg, "", 10); err != nil || len(l) != 0 {
			t.Errorf("List = %v, %v; want empty", l, err)
		}
		if n, err := f.s.Count(bg); err != nil || n != 0 {
			t.Errorf("Count = %d, %v; want 0", n, err)
		}
	}},
	{"Delete/is final: later and late upserts report ErrDeleted", func(t *testing.T, f *storeFixture) {
		f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		f.delete("alice", usersync.Deleted)
		for _, v := range []usersync.Version{5, 10, 11, 1 << 47} {
			if _, _, err := f.s.Upsert(bg, f.write("alice", v, usersync.AllFields, full("zombie"))); !errors.Is(err, usersync.ErrDeleted) {
				t.Errorf("Upsert v%d after Delete: err = %v, want ErrDeleted", v, err)
			}
		}
		if _, err := f.byToken("alice"); !errors.Is(err, usersync.ErrDeleted) {
			t.Errorf("GetByTokenIdentifier err = %v, want ErrDeleted", err)
		}
	}},
	{"Delete/an unknown key records a tombstone that refuses a later create", func(t *testing.T, f *storeFixture) {
		ts := f.delete("ghost", usersync.Deleted)
		if ts.ID == "" || ts.DeletedAt.IsZero() {
			t.Fatalf("tombstone %+v has no ID or DeletedAt", ts)
		}
		if _, _, err := f.s.Upsert(bg, f.write("ghost", 1, usersync.AllFields, full("ghost"))); !errors.Is(err, usersync.ErrDeleted) {
			t.Fatalf("user.created after user.deleted: err = %v, want ErrDeleted", err)
		}
		if n, _ := f.s.Count(bg); n != 0 {
			t.Fatalf("Count = %d, want 0", n)
		}
	}},
	{"Delete/deleting twice is stale and keeps the first tombstone", func(t *testing.T, f *storeFixture) {
		f.upsert(f.write("alice", 10, usersync.AllFields, full("alice")), usersync.Created)
		first := f.delete("alice", usersync.Deleted)
		second := f.delete("alice", usersync.Stale)
		if second.ID != first.ID {
			t.Fatalf("second delete ID %q, want %q", second.ID, first.ID)
		}
		sameTime(t, "DeletedAt", second.DeletedAt, first.DeletedAt)
	}},
	{"Delete/a malformed tombstone is rejected with ErrInvalid", func(t *testing.T, f *storeFixture) {
		ts := f.tombstone("alice")
		ts.TokenIdentifier = ""
		if _, _, err := f.s.Delete(bg, ts); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	}},
	{"GetMany/returns the live users among the IDs, skipping unknown and deleted", func(t *testing.T, f *storeFixture) {
		a := f.upsert(f.write("a", 1, usersync.AllFields, full("a")), usersync.Created)
		b := f.upsert(f.write("b", 1, usersync.AllFields, full("b")), usersync.Created)
		c := f.upsert(f.write("c", 1, usersync.AllFields, full("c")), usersync.Created)
		f.delete("c", usersync.Deleted)
		m, err := f.s.GetMany(bg, []string{a.ID, "nope", b.ID, c.ID, a.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(m) != 2 || m[a.ID].Name != full("a").Name || m[b.ID].Name != full("b").Name {
			t.Fatalf("GetMany = %v, want a and b", m)
		}
		if m, err := f.s.GetMany(bg, nil); err != nil || len(m) != 0 {
			t.Fatalf("GetMany(nil) = %v, %v", m, err)
		}
	}},
	{"GetMany/handles a large page of IDs", func(t *testing.T, f *storeFixture) {
		var ids []string
		for i := range 600 {
			u := f.upsert(f.write(fmt.Sprint("u", i), 1, usersync.FieldName, usersync.Profile{Name: fmt.Sprint(i)}), usersync.Created)
			ids = append(ids, u.ID)
		}
		m, err := f.s.GetMany(bg, ids)
		if err != nil || len(m) != len(ids) {
			t.Fatalf("GetMany(600 IDs) = %d users, %v", len(m), err)
		}
	}},
	{"List/pages through live users by ID without gaps or repeats", func(t *testing.T, f *storeFixture) {
		var want []string
		for i := range 25 {
			u := f.upsert(f.write(fmt.Sprint("u", i), 1, usersync.AllFields, full(fmt.Sprint("n", i))), usersync.Created)
			if i%5 == 0 {
				f.delete(fmt.Sprint("u", i), usersync.Deleted)
				continue
			}
			want = append(want, u.ID)
		}
		sort.Strings(want)
		var got []string
		after := ""
		for {
			page, err := f.s.List(bg, after, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 7 {
				t.Fatalf("page of %d, limit 7", len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, u := range page {
				got = append(got, u.ID)
			}
			after = page[len(page)-1].ID
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("listed %v, want %v", got, want)
		}
		if _, err := f.s.List(bg, "", 0); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("List limit 0: err = %v, want ErrInvalid", err)
		}
	}},
	{"Count/counts live users only", func(t *testing.T, f *storeFixture) {
		for i := range 5 {
			f.upsert(f.write(fmt.Sprint("u", i), 1, usersync.AllFields, full("x")), usersync.Created)
		}
		f.delete("u1", usersync.Deleted)
		f.delete("never", usersync.Deleted)
		if n, err := f.s.Count(bg); err != nil || n != 4 {
			t.Fatalf("Count = %d, %v; want 4", n, err)
		}
	}},
	{"Copies/changing a returned user never changes stored state", func(t *testing.T, f *storeFixture) {
		w := f.write("alice", 1, usersync.AllFields, full("alice"))
		u := f.upsert(w, usersync.Created)
		w.Profile.Metadata[2] = 'X' // the caller's own buffer
		u.Metadata[2] = 'X'
		u.Name = "changed"
		got := f.mustGet("alice")
		got.Metadata[2] = 'Y'
		sameProfile(t, "stored", f.mustGet("alice").Profile, full("alice"))
	}},
	{"Concurrency/64 concurrent first writes store one user and all get its ID", func(t *testing.T, f *storeFixture) {
		const n = 64
		writes := make([]usersync.Write, n)
		for i := range writes {
			writes[i] = f.write("racer", usersync.Version(i+1), usersync.AllFields, full(fmt.Sprint("r", i)))
		}
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				var u usersync.User
				u, _, errs[i] = f.s.Upsert(bg, writes[i])
				ids[i] = u.ID
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("writer %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("writer %d got ID %q, writer 0 got %q", i, ids[i], ids[0])
			}
		}
		if c, _ := f.s.Count(bg); c != 1 {
			t.Fatalf("Count = %d, want 1", c)
		}
		u := f.mustGet("racer")
		sameProfile(t, "final", u.Profile, full(fmt.Sprint("r", n-1)))
	}},
	{"Concurrency/a shuffled, partly duplicated stream folds to the in-order state", func(t *testing.T, f *storeFixture) {
		events := Stream(rand.New(rand.NewPCG(1, 2)), 100, 1000)
		inOrder := f.newStore(t)
		for _, e := range events {
			applyEvent(t, inOrder, e)
		}
		// Shuffle, duplicate a fifth, and deliver from 8 goroutines.
		r := rand.New(rand.NewPCG(3, 4))
		shuffled := append([]Event(nil), events...)
		for i := 0; i < len(events)/5; i++ {
			shuffled = append(shuffled, events[r.IntN(len(events))])
		}
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < len(shuffled); i += 8 {
					applyEvent(t, f.s, shuffled[i])
				}
			})
		}
		wg.Wait()
		want := Fold(events)
		for _, st := range []struct {
			name string
			s    usersync.Store
		}{{"in order", inOrder}, {"shuffled", f.s}} {
			if diff := CompareState(bg, st.s, want); diff != "" {
				t.Fatalf("%s delivery differs from the fold: %s", st.name, diff)
			}
		}
	}},
	{"GetByExternalID/finds the live user of the issuer, the newest of several", func(t *testing.T, f *storeFixture) {
		p := full("alice")
		p.ExternalID = "legacy-42"
		a := f.upsert(f.write("alice", 1, usersync.AllFields, p), usersync.Created)
		got, err := f.s.GetByExternalID(bg, "https://issuer.test", "legacy-42")
		if err != nil || got.ID != a.ID {
			t.Fatalf("GetByExternalID = %+v, %v; want alice", got, err)
		}
		for _, c := range []struct{ issuer, ext string }{{"https://other.test", "legacy-42"}, {"https://issuer.test", "legacy-4"}, {"https://issuer.test", "LEGACY-42"}, {"https://issuer.test", ""}} {
			if _, err := f.s.GetByExternalID(bg, c.issuer, c.ext); !errors.Is(err, usersync.ErrNotFound) {
				t.Errorf("GetByExternalID(%q, %q): err = %v, want ErrNotFound", c.issuer, c.ext, err)
			}
		}
		// Another user with the same external ID, updated later, wins.
		b := f.upsert(f.write("bob", 1, usersync.AllFields, p), usersync.Created)
		if got, err := f.s.GetByExternalID(bg, "https://issuer.test", "legacy-42"); err != nil || got.ID != b.ID {
			t.Fatalf("with two users of legacy-42: %+v, %v; want the newer, bob", got, err)
		}
		f.delete("bob", usersync.Deleted)
		if got, err := f.s.GetByExternalID(bg, "https://issuer.test", "legacy-42"); err != nil || got.ID != a.ID {
			t.Fatalf("after bob's delete: %+v, %v; want alice", got, err)
		}
		f.delete("alice", usersync.Deleted)
		if _, err := f.s.GetByExternalID(bg, "https://issuer.test", "legacy-42"); !errors.Is(err, usersync.ErrDeleted) {
			t.Fatalf("after both deletes: err = %v, want ErrDeleted (the tombstones keep the external ID)", err)
		}
		// A live user of the external ID wins over a newer tombstone.
		c := f.upsert(f.write("carol", 1, usersync.AllFields, p), usersync.Created)
		f.upsert(f.write("dan", 1, usersync.AllFields, p), usersync.Created)
		f.delete("dan", usersync.Deleted)
		if got, err := f.s.GetByExternalID(bg, "https://issuer.test", "legacy-42"); err != nil || got.ID != c.ID {
			t.Fatalf("with carol live and dan's newer tombstone: %+v, %v; want carol", got, err)
		}
	}},
	{"UpsertBatch/applies every write as Upsert would, with outcomes and users", func(t *testing.T, f *storeFixture) {
		f.upsert(f.write("old", 10, usersync.AllFields, full("old")), usersync.Created)
		f.upsert(f.write("gone", 10, usersync.AllFields, full("gone")), usersync.Created)
		f.delete("gone", usersync.Deleted)
		ws := []usersync.Write{
			f.write("new", 5, usersync.AllFields, full("new")),                   // Created
			f.write("old", 11, usersync.FieldName, full("renamed")),              // Updated
			f.write("old", 11, usersync.FieldName, full("same version")),         // Stale: equal version, same batch
			f.write("gone", 20, usersync.AllFields, full("zombie")),              // Stale: a tombstone
			f.write("new", 6, usersync.FieldEmail, full("new2")),                 // Updated: the same key again
			f.write("old", 9, usersync.AllFields, full("older")),                 // Stale: older
			f.write("fresh", 1, usersync.FieldName, usersync.Profile{Name: "F"}), // Created
		}
		users, outcomes, err := f.s.UpsertBatch(bg, ws)
		if err != nil {
			t.Fatal(err)
		}
		want := []usersync.Outcome{usersync.Created, usersync.Updated, usersync.Stale, usersync.Stale, usersync.Updated, usersync.Stale, usersync.Created}
		if fmt.Sprint(outcomes) != fmt.Sprint(want) {
			t.Fatalf("outcomes %v, want %v", outcomes, want)
		}
		for i, o := range outcomes {
			switch {
			case o == usersync.Stale && users[i].ID != "":
				t.Errorf("write %d is stale, but a user was returned", i)
			case o != usersync.Stale && users[i].TokenIdentifier != ws[i].TokenIdentifier:
				t.Errorf("write %d: returned user %+v", i, users[i])
			}
		}
		if users[0].ID != ws[0].ID || users[4].ID != ws[0].ID {
			t.Fatalf("new user's IDs %q and %q, want %q", users[0].ID, users[4].ID, ws[0].ID)
		}
		wantNew := full("new")
		wantNew.Email = full("new2").Email
		wantNew.EmailVerified = false // a new address, without a flag of its own
		sameProfile(t, "new", f.mustGet("new").Profile, wantNew)
		wantOld := full("old")
		wantOld.Name = full("renamed").Name
		sameProfile(t, "old", f.mustGet("old").Profile, wantOld)
		if _, err := f.byToken("gone"); !errors.Is(err, usersync.ErrDeleted) {
			t.Fatalf("gone: %v, want ErrDeleted", err)
		}
		if n, err := f.s.Count(bg); err != nil || n != 3 {
			t.Fatalf("Count = %d, %v; want 3", n, err)
		}
	}},
	{"UpsertBatch/an import of 1,000 users, twice, then newer", func(t *testing.T, f *storeFixture) {
		// Big enough for any store's largest statement, with a bound on
		// the wait: a store that deadlocks on its own pool fails here.
		ctx, cancel := context.WithTimeout(bg, time.Minute)
		defer cancel()
		ws := make([]usersync.Write, 1000)
		for i := range ws {
			name := fmt.Sprintf("import-%04d", i)
			ws[i] = f.write(name, 3, usersync.AllFields, full(name))
		}
		for round, want := range []usersync.Outcome{usersync.Created, usersync.Stale, usersync.Updated} {
			if want == usersync.Updated {
				for i := range ws {
					ws[i].Version, ws[i].Fields, ws[i].Profile.Name = 4, usersync.FieldName, fmt.Sprintf("renamed-%04d", i)
				}
			}
			users, outcomes, err := f.s.UpsertBatch(ctx, ws)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			for i, o := range outcomes {
				if o != want || (want != usersync.Stale && users[i].Subject != ws[i].Subject) {
					t.Fatalf("round %d, write %d: %v, %+v; want %v", round, i, o, users[i], want)
				}
			}
		}
		if n, err := f.s.Count(bg); err != nil || n != 1000 {
			t.Fatalf("Count = %d, %v; want 1000", n, err)
		}
		u := f.mustGet("import-0777")
		if u.Name != "renamed-0777" || u.Email != full("import-0777").Email || u.Version != 4 {
			t.Fatalf("import-0777: %+v", u)
		}
	}},
	{"UpsertBatch/a taken ID fails the whole batch with ErrInvalid and stores nothing", func(t *testing.T, f *storeFixture) {
		alice := f.upsert(f.write("alice", 1, usersync.AllFields, full("alice")), usersync.Created)
		taken := f.write("bob", 2, usersync.AllFields, full("bob"))
		taken.ID = alice.ID
		twins := []usersync.Write{f.write("carol", 1, usersync.FieldName, full("carol")), f.write("dave", 1, usersync.FieldName, full("dave"))}
		twins[1].ID = twins[0].ID
		for name, ws := range map[string][]usersync.Write{
			"another user's ID":    {f.write("erin", 1, usersync.FieldName, full("erin")), taken},
			"one ID for two users": twins,
		} {
			if _, _, err := f.s.UpsertBatch(bg, ws); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("%s: %v, want ErrInvalid", name, err)
			}
		}
		for _, sub := range []string{"bob", "carol", "dave", "erin"} {
			if _, err := f.byToken(sub); !errors.Is(err, usersync.ErrNotFound) {
				t.Fatalf("%s was stored: %v", sub, err)
			}
		}
		sameProfile(t, "alice", f.mustGet("alice").Profile, full("alice"))
	}},
	{"UpsertBatch/a malformed write fails the whole batch and stores nothing", func(t *testing.T, f *storeFixture) {
		bad := f.write("b", 1, usersync.AllFields, full("b"))
		bad.Version = 0
		if _, _, err := f.s.UpsertBatch(bg, []usersync.Write{f.write("a", 1, usersync.AllFields, full("a")), bad}); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
		if n, err := f.s.Count(bg); err != nil || n != 0 {
			t.Fatalf("Count = %d, %v; want 0", n, err)
		}
		if users, outcomes, err := f.s.UpsertBatch(bg, nil); err != nil || len(users) != 0 || len(outcomes) != 0 {
			t.Fatalf("an empty batch: %v, %v, %v", users, outcomes, err)
		}
	}},
	{"UpsertBatch/a large batch, and one racing single upserts, end in the fold", func(t *testing.T, f *storeFixture) {
		events := Stream(rand.New(rand.NewPCG(31, 32)), 300, 1200)
		var batch []usersync.Write
		var singles []Event
		for i, e := range events {
			if e.Delete {
				singles = append(singles, e)
				continue
			}
			w := usersync.Write{ID: uuid.NewString(), TokenIdentifier: usersync.TokenIdentifier(StreamIssuer, e.Subject), Issuer: StreamIssuer,
				Subject: e.Subject, Version: e.Version, Fields: e.Fields, Profile: e.Profile, At: epoch}
			if i%3 == 0 {
				singles = append(singles, e)
			} else {
				batch = append(batch, w)
			}
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for start := 0; start < len(batch); start += 400 {
				// A batch is atomic: when a store gives up on it (say, a
				// multi-master cluster's conflicts with the singles went on
				// for longer than its retries), nothing of it was applied,
				// and the caller sends it again.
				var err error
				for range 20 {
					if _, _, err = f.s.UpsertBatch(bg, batch[start:min(start+400, len(batch))]); err == nil {
						break
					}
				}
				if err != nil {
					t.Errorf("UpsertBatch: %v", err)
				}
			}
		})
		wg.Go(func() {
			for _, e := range singles {
				applyEvent(t, f.s, e)
			}
		})
		wg.Wait()
		// A batch write aimed at a user the singles deleted first is stale:
		// the fold holds.
		if diff := CompareState(bg, f.s, Fold(events)); diff != "" {
			t.Fatal(diff)
		}
	}},
	{"Feed/a change carries the external ID; a Deleted one the tombstone's", func(t *testing.T, f *storeFixture) {
		p := full("alice")
		p.ExternalID = "legacy-7"
		a := f.upsert(f.write("alice", 1, usersync.AllFields, p), usersync.Created)
		f.upsert(f.write("bob", 1, usersync.FieldName, usersync.Profile{Name: "Bob"}), usersync.Created)
		f.delete("alice", usersync.Deleted)
		changes, err := f.feed.Changes(bg, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range changes {
			got = append(got, fmt.Sprintf("%s %s %q", c.Outcome, c.UserID, c.ExternalID))
		}
		want := []string{
			fmt.Sprintf("created %s %q", a.ID, "legacy-7"), fmt.Sprintf("created %s %q", changes[1].UserID, ""), fmt.Sprintf("deleted %s %q", a.ID, "legacy-7"),
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("feed %v, want %v", got, want)
		}
	}},
	{"Feed/every change is in the feed, in order; stale and failed writes add none", func(t *testing.T, f *storeFixture) {
		a := f.upsert(f.write("alice", 1, usersync.AllFields, full("alice")), usersync.Created)
		f.upsert(f.write("alice", 2, usersync.FieldName, usersync.Profile{Name: "Alicia"}), usersync.Updated)
		f.upsert(f.write("alice", 2, usersync.FieldName, usersync.Profile{Name: "stale"}), usersync.Stale)
		bad := f.write("bob", 1, usersync.FieldName, usersync.Profile{Name: "Bob"})
		bad.ID = a.ID // taken: fails
		if _, _, err := f.s.Upsert(bg, bad); err == nil {
			t.Fatal("a write with a taken ID succeeded")
		}
		if _, _, err := f.s.UpsertBatch(bg, []usersync.Write{f.write("carol", 1, usersync.FieldName, full("carol")), bad}); err == nil {
			t.Fatal("a batch with a taken ID succeeded")
		}
		users, _, err := f.s.UpsertBatch(bg, []usersync.Write{
			f.write("dave", 1, usersync.FieldName, full("dave")),
			f.write("alice", 3, usersync.FieldEmail, full("alice3")),
			f.write("alice", 1, usersync.FieldEmail, full("old")), // stale
		})
		if err != nil {
			t.Fatal(err)
		}
		f.delete("alice", usersync.Deleted)
		f.delete("alice", usersync.Stale)
		if _, _, err := f.s.Upsert(bg, f.write("alice", 9, usersync.FieldName, full("zombie"))); !errors.Is(err, usersync.ErrDeleted) {
			t.Fatalf("a write to a tombstone: %v", err)
		}
		ghost := f.delete("ghost", usersync.Deleted) // a tombstone for a key never seen
		want := []string{
			"created " + a.ID, "updated " + a.ID, "created " + users[0].ID, "updated " + a.ID, "deleted " + a.ID, "deleted " + ghost.ID,
		}
		changes, err := f.feed.Changes(bg, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, c := range changes {
			got = append(got, c.Outcome.String()+" "+c.UserID)
			if c.Seq <= 0 || i > 0 && c.Seq <= changes[i-1].Seq {
				t.Fatalf("Seqs not increasing: %+v", changes)
			}
			if c.At.Before(epoch) || c.At.After(epoch.Add(time.Hour)) {
				t.Fatalf("change %d at %v: not the write's time", i, c.At)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("feed %v, want %v", got, want)
		}
		// The cursor: after a Seq, the rest; a limit caps the page.
		rest, err := f.feed.Changes(bg, changes[2].Seq, 2)
		if err != nil || len(rest) != 2 || rest[0].Seq != changes[3].Seq || rest[1].Seq != changes[4].Seq {
			t.Fatalf("Changes(after the third, 2) = %+v, %v", rest, err)
		}
		if none, err := f.feed.Changes(bg, changes[len(changes)-1].Seq, 10); err != nil || len(none) != 0 {
			t.Fatalf("Changes after the last = %+v, %v", none, err)
		}
		if _, err := f.feed.Changes(bg, 0, 0); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("limit 0: %v", err)
		}
	}},
	{"Feed/concurrent writers: a reader following the cursor misses nothing, and each user's changes keep their order", func(t *testing.T, f *storeFixture) {
		const writers, usersEach, writesEach = 6, 8, 5
		var applied atomic.Int64
		stop := make(chan struct{})
		seen := map[int64]usersync.Change{}
		var readErr error
		var reader sync.WaitGroup
		reader.Go(func() {
			var cursor int64
			for done := false; ; {
				page, err := f.feed.Changes(bg, cursor, 50)
				if err != nil {
					readErr = err
					return
				}
				for _, c := range page {
					if _, dup := seen[c.Seq]; dup {
						readErr = fmt.Errorf("seq %d read twice", c.Seq)
						return
					}
					seen[c.Seq] = c
					cursor = c.Seq
				}
				if len(page) == 0 {
					if done {
						return
					}
					select {
					case <-stop:
						done = true // one more read after the writers are done
					case <-time.After(2 * time.Millisecond):
					}
				}
			}
		})
		var wg sync.WaitGroup
		for g := range writers {
			wg.Go(func() {
				for u := range usersEach {
					sub := fmt.Sprintf("w%d-u%d", g, u)
					for k := range writesEach {
						w := usersync.Write{ID: uuid.NewString(), TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", sub), Issuer: "https://issuer.test",
							Subject: sub, Version: usersync.Version(k + 1), Fields: usersync.FieldName, Profile: usersync.Profile{Name: fmt.Sprint(k)},
							At: epoch.Add(time.Duration(k+1) * time.Second)}
						var o usersync.Outcome
						var err error
						if k == writesEach-1 && u%2 == 0 {
							_, o, err = f.s.Delete(bg, w)
						} else {
							_, o, err = f.s.Upsert(bg, w)
						}
						if err != nil {
							t.Errorf("%s write %d: %v", sub, k, err)
							return
						}
						if o != usersync.Stale {
							applied.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
		close(stop)
		reader.Wait()
		if readErr != nil {
			t.Fatal(readErr)
		}
		if int64(len(seen)) != applied.Load() {
			t.Fatalf("the reader saw %d changes of %d writes that changed something", len(seen), applied.Load())
		}
		all, err := f.feed.Changes(bg, 0, 100000)
		if err != nil || len(all) != len(seen) {
			t.Fatalf("the whole feed holds %d changes, the reader saw %d: %v", len(all), len(seen), err)
		}
		last := map[string]time.Time{}
		for _, c := range all {
			if !c.At.After(last[c.UserID]) {
				t.Fatalf("user %s: change at %v after one at %v", c.UserID, c.At, last[c.UserID])
			}
			last[c.UserID] = c.At
		}
	}},
	{"Feed/pruning deletes old, passed changes; Seqs go on", func(t *testing.T, f *storeFixture) {
		for i := range 5 {
			w := f.write(fmt.Sprintf("p%d", i), 1, usersync.FieldName, usersync.Profile{Name: "P"})
			w.At = epoch.Add(time.Duration(i) * time.Hour)
			f.upsert(w, usersync.Created)
		}
		changes, err := f.feed.Changes(bg, 0, 10)
		if err != nil || len(changes) != 5 {
			t.Fatalf("%+v, %v", changes, err)
		}
		// Up to the fourth, but only those before 2:30: the first three.
		n, err := f.feed.PruneChanges(bg, changes[3].Seq, epoch.Add(150*time.Minute))
		if err != nil || n != 3 {
			t.Fatalf("PruneChanges = %d, %v; want 3", n, err)
		}
		left, err := f.feed.Changes(bg, 0, 10)
		if err != nil || len(left) != 2 || left[0].Seq != changes[3].Seq {
			t.Fatalf("after pruning: %+v, %v", left, err)
		}
		w := f.write("p9", 1, usersync.FieldName, usersync.Profile{Name: "P"})
		f.upsert(w, usersync.Created)
		// Everything: a store may keep the newest change, so that no Seq
		// is handed out twice.
		if n, err := f.feed.PruneChanges(bg, 1<<62, epoch.Add(1000*time.Hour)); err != nil || n < 2 || n > 3 {
			t.Fatalf("prune all: %d, %v", n, err)
		}
		f.upsert(f.write("p10", 1, usersync.FieldName, usersync.Profile{Name: "P"}), usersync.Created)
		next, err := f.feed.Changes(bg, 0, 10)
		if err != nil || len(next) == 0 || len(next) > 2 || next[len(next)-1].Seq <= changes[4].Seq+1 {
			t.Fatalf("after pruning all: %+v, %v; want the new change with a Seq beyond every earlier one", next, err)
		}
	}},
	{"Leases/one holder at a time; the cursor stays with the lease", func(t *testing.T, f *storeFixture) {
		// A holder that another takes over within ttl is a failure: a
		// ttl that a few calls of a slow machine do not outlast.
		const ttl = 2 * time.Second
		cursor, ok, err := f.leases.AcquireLease(bg, "job", "a", ttl)
		if err != nil || !ok || cursor != 0 {
			t.Fatalf("a acquires a new lease: %d, %v, %v", cursor, ok, err)
		}
		if _, ok, err := f.leases.AcquireLease(bg, "job", "b", ttl); err != nil || ok {
			t.Fatalf("b acquires a's lease: %v, %v; want refused", ok, err)
		}
		if ok, err := f.leases.RenewLease(bg, "job", "b", ttl, 99); err != nil || ok {
			t.Fatalf("b renews a's lease: %v, %v; want refused", ok, err)
		}
		if ok, err := f.leases.RenewLease(bg, "job", "a", ttl, 7); err != nil || !ok {
			t.Fatalf("a renews: %v, %v", ok, err)
		}
		held := time.Now() // a holds it until ttl from then, at least
		if cursor, ok, err := f.leases.AcquireLease(bg, "job", "a", ttl); err != nil || !ok || cursor != 7 {
			t.Fatalf("a acquires again: %d, %v, %v; want 7, held", cursor, ok, err)
		}
		if _, ok, err := f.leases.AcquireLease(bg, "other job", "b", ttl); err != nil || !ok {
			t.Fatalf("b acquires another lease: %v, %v", ok, err)
		}
		// a lets it expire: b, asking every few milliseconds, takes it
		// then, and not long before.
		for deadline := time.Now().Add(ttl + 30*time.Second); ; time.Sleep(10 * time.Millisecond) {
			cursor, ok, err = f.leases.AcquireLease(bg, "job", "b", ttl)
			if err != nil || ok || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || !ok || cursor != 7 {
			t.Fatalf("b acquires the expired lease: %d, %v, %v; want the cursor 7", cursor, ok, err)
		}
		// Half the ttl, not all of it: the store's clock may not be
		// this process's, and may count in coarser units.
		if took := time.Since(held); took < ttl/2 {
			t.Fatalf("b took over a's lease %v after a acquired it for %v", took, ttl)
		}
		if ok, err := f.leases.RenewLease(bg, "job", "a", ttl, 8); err != nil || ok {
			t.Fatalf("a renews a lease b took over: %v, %v; want refused", ok, err)
		}
		if err := f.leases.ReleaseLease(bg, "job", "a"); err != nil { // not a's: a no-op
			t.Fatal(err)
		}
		if _, ok, _ := f.leases.AcquireLease(bg, "job", "c", ttl); ok {
			t.Fatal("c acquired b's lease after a released it")
		}
		if err := f.leases.ReleaseLease(bg, "job", "b"); err != nil {
			t.Fatal(err)
		}
		if cursor, ok, err := f.leases.AcquireLease(bg, "job", "c", ttl); err != nil || !ok || cursor != 7 {
			t.Fatalf("c acquires the released lease: %d, %v, %v", cursor, ok, err)
		}
		if ok, err := f.leases.RenewLease(bg, "job", "c", ttl, 1<<40); err != nil || !ok {
			t.Fatalf("c renews: %v, %v", ok, err)
		}
		for _, name := range []string{"jo%", "j_b"} { // no wildcards
			if _, ok, err := f.leases.AcquireLease(bg, name, "d", ttl); err != nil || !ok {
				t.Fatalf("acquire %q: %v, %v", name, ok, err)
			}
		}
		for prefix, want := range map[string]string{
			"job": "map[job:1099511627776]", "": "map[j_b:0 jo%:0 job:1099511627776 other job:0]",
			"jo%": "map[jo%:0]", "j%": "map[]", "jo_": "map[]", "other": "map[other job:0]", "never": "map[]",
		} {
			got, err := f.leases.LeaseCursors(bg, prefix)
			if err != nil || fmt.Sprint(got) != want {
				t.Fatalf("LeaseCursors(%q) = %v, %v; want %s", prefix, got, err, want)
			}
		}
		if _, _, err := f.leases.AcquireLease(bg, "", "c", ttl); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("an empty lease name: err = %v, want ErrInvalid", err)
		}
	}},
	{"Leases/concurrent acquires: exactly one holder", func(t *testing.T, f *storeFixture) {
		var holders atomic.Int32
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				_, ok, err := f.leases.AcquireLease(bg, "race", fmt.Sprint("h", i), time.Minute)
				if err != nil {
					t.Errorf("holder %d: %v", i, err)
				}
				if ok {
					holders.Add(1)
				}
			})
		}
		wg.Wait()
		if n := holders.Load(); n != 1 {
			t.Fatalf("%d holders of one lease", n)
		}
	}},
	{"Context/a canceled context fails every method", func(t *testing.T, f *storeFixture) {
		u := f.upsert(f.write("alice", 1, usersync.AllFields, full("alice")), usersync.Created)
		ctx, cancel := context.WithCancel(bg)
		cancel()
		checks := map[string]error{}
		_, checks["Get"] = f.s.Get(ctx, u.ID)
		_, checks["GetByTokenIdentifier"] = f.s.GetByTokenIdentifier(ctx, u.TokenIdentifier)
		_, checks["GetMany"] = f.s.GetMany(ctx, []string{u.ID})
		_, _, checks["Upsert"] = f.s.Upsert(ctx, f.write("bob", 1, usersync.AllFields, full("bob")))
		_, _, checks["Delete"] = f.s.Delete(ctx, f.tombstone("alice"))
		_, checks["List"] = f.s.List(ctx, "", 10)
		_, checks["Count"] = f.s.Count(ctx)
		_, checks["GetByExternalID"] = f.s.GetByExternalID(ctx, u.Issuer, "x")
		_, _, checks["UpsertBatch"] = f.s.UpsertBatch(ctx, []usersync.Write{f.write("carol", 1, usersync.AllFields, full("carol"))})
		methods := []reflect.Type{reflect.TypeFor[usersync.Store]()}
		if f.leases != nil {
			_, _, checks["AcquireLease"] = f.leases.AcquireLease(ctx, "l", "h", time.Minute)
			_, checks["RenewLease"] = f.leases.RenewLease(ctx, "l", "h", time.Minute, 1)
			checks["ReleaseLease"] = f.leases.ReleaseLease(ctx, "l", "h")
			_, checks["LeaseCursors"] = f.leases.LeaseCursors(ctx, "l")
			methods = append(methods, reflect.TypeFor[lease.Store]())
		} else {
			t.Logf("%T does not implement lease.Store: no lease methods to check", f.s)
		}
		if f.orgs != nil {
			o := orgs.Organization{Issuer: orgIssuer, ID: "org_1", UpdatedAt: epoch, Version: 1}
			m := orgs.Membership{Issuer: orgIssuer, OrganizationID: "org_1", UserSubject: "alice", ID: "orgmem_1", UpdatedAt: epoch, Version: 1}
			_, _, checks["UpsertOrganization"] = f.orgs.UpsertOrganization(ctx, o)
			_, checks["UpsertOrganizations"] = f.orgs.UpsertOrganizations(ctx, []orgs.Organization{o})
			_, _, checks["DeleteOrganization"] = f.orgs.DeleteOrganization(ctx, orgIssuer, "org_1", epoch)
			_, _, checks["UpsertMembership"] = f.orgs.UpsertMembership(ctx, m)
			_, checks["UpsertMemberships"] = f.orgs.UpsertMemberships(ctx, []orgs.Membership{m})
			_, _, checks["DeleteMembership"] = f.orgs.DeleteMembership(ctx, m)
			_, checks["Organization"] = f.orgs.Organization(ctx, orgIssuer, "org_1")
			_, checks["Organizations"] = f.orgs.Organizations(ctx, orgIssuer, "", 10)
			_, checks["Member"] = f.orgs.Member(ctx, orgIssuer, "org_1", "alice")
			_, checks["Memberships"] = f.orgs.Memberships(ctx, orgIssuer, "org_1", "", 10)
			_, checks["UserMemberships"] = f.orgs.UserMemberships(ctx, orgIssuer, "alice", "", 10)
			methods = append(methods, reflect.TypeFor[orgs.Store]())
		} else {
			t.Logf("%T does not implement orgs.Store: no organization methods to check", f.s)
		}
		if f.sessions != nil {
			e := sessions.Ending{Issuer: orgIssuer, SessionID: "sess_1", EndedAt: epoch}
			checks["EndSessions"] = f.sessions.EndSessions(ctx, e)
			_, checks["EndedSessions"] = f.sessions.EndedSessions(ctx, time.Time{}, 0, 10)
			_, checks["PruneEndedSessions"] = f.sessions.PruneEndedSessions(ctx, epoch)
			methods = append(methods, reflect.TypeFor[sessions.Store]())
		} else {
			t.Logf("%T does not implement sessions.Store: no session methods to check", f.s)
		}
		if f.feed != nil {
			_, checks["Changes"] = f.feed.Changes(ctx, 0, 10)
			_, checks["PruneChanges"] = f.feed.PruneChanges(ctx, 1, time.Now())
			methods = append(methods, reflect.TypeFor[feed.Store]())
		} else {
			t.Logf("%T does not implement feed.Store: no feed methods to check", f.s)
		}
		// Every method of the interfaces the store implements is called
		// above.
		n := map[string]bool{}
		for _, it := range methods {
			for i := range it.NumMethod() {
				n[it.Method(i).Name] = true
			}
		}
		for name := range n {
			if _, ok := checks[name]; !ok {
				t.Fatalf("%d methods checked of the store's %d: not %s", len(checks), len(n), name)
			}
		}
		if len(checks) != len(n) {
			t.Fatalf("%d methods checked of the store's %d", len(checks), len(n))
		}
		for name, err := range checks {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a canceled context: err = %v, want context.Canceled", name, err)
			}
		}
		if _, err := f.byToken("bob"); !errors.Is(err, usersync.ErrNotFound) {
			t.Fatalf("a canceled Upsert stored a user: %v", err)
		}
		f.mustGet("alice")
	}},
}
