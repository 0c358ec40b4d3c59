package usersynctest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/usersync/usersync"
)

// StreamIssuer is the issuer of the users in a generated Stream.
const StreamIssuer = "https://stream.usersync.test"

// Event is one delivery of a generated stream: a versioned write of some
// profile fields, or a delete, for the user StreamIssuer|Subject.
type Event struct {
	Subject string
	Delete  bool
	Version usersync.Version
	Fields  usersync.Fields
	Profile usersync.Profile // only the fields in Fields are set
}

// Stream returns n events over the given number of users in delivery
// order: each user's versions strictly increase, each write carries a
// random non-empty set of fields, and about one user in ten ends with a
// delete. Deliver it shuffled and duplicated to test convergence; Fold
// gives the state every order must reach.
func Stream(r *rand.Rand, users, n int) []Event {
	versions := make([]usersync.Version, users)
	deleted := make([]bool, users)
	events := make([]Event, 0, n)
	for len(events) < n {
		u := r.IntN(users)
		if deleted[u] {
			continue
		}
		versions[u] += usersync.Version(1 + r.IntN(1000))
		e := Event{Subject: fmt.Sprintf("user_%04d", u), Version: versions[u]}
		remaining := n - len(events)
		if r.IntN(10) == 0 && remaining < n/3 {
			e.Delete, deleted[u] = true, true
			events = append(events, e)
			continue
		}
		e.Fields = usersync.Fields(1 + r.IntN(int(usersync.AllFields)))
		all := fullProfile(fmt.Sprintf("%s v%d", e.Subject, e.Version))
		e.Profile.CopyFields(&all, e.Fields)
		events = append(events, e)
	}
	return events
}

// State is the expected final state of one user after a stream.
type State struct {
	Deleted bool
	Profile usersync.Profile
	Version usersync.Version
}

// Fold returns the state, by subject, that delivering events in any order,
// with any duplicates, must reach: each field holds its newest write, and a
// deleted user stays deleted. EmailVerified belongs to the address it was
// written with: it holds while the newest email is that address (or
// always, if its write carried no email).
func Fold(events []Event) map[string]State {
	type acc struct {
		st          State
		versions    [16]usersync.Version
		verifiedFor *string // the email of the write of the newest EmailVerified
	}
	m := map[string]*acc{}
	for _, e := range events {
		a := m[e.Subject]
		if a == nil {
			a = &acc{}
			m[e.Subject] = a
		}
		if e.Delete {
			a.st.Deleted = true
			continue
		}
		for i := range 16 {
			f := usersync.Fields(1 << i)
			if e.Fields&f != 0 && f&usersync.AllFields != 0 && e.Version > a.versions[i] {
				a.versions[i] = e.Version
				a.st.Profile.CopyFields(&e.Profile, f)
				a.st.Version = max(a.st.Version, e.Version)
				if f == usersync.FieldEmailVerified {
					a.verifiedFor = nil
					if e.Fields&usersync.FieldEmail != 0 {
						a.verifiedFor = &e.Profile.Email
					}
				}
			}
		}
	}
	out := make(map[string]State, len(m))
	for sub, a := range m {
		if a.verifiedFor != nil && *a.verifiedFor != a.st.Profile.Email {
			a.st.Profile.EmailVerified = false // the flag of another address
		}
		if a.st.Deleted {
			a.st.Profile, a.st.Version = usersync.Profile{}, 0
		}
		out[sub] = a.st
	}
	return out
}

// applyEvent delivers e to s as the Syncer would, with a fresh ID;
// ErrDeleted (a write after a delete) counts as delivered. It fails t on
// any other error.
func applyEvent(t testing.TB, s usersync.Store, e Event) {
	ti := usersync.TokenIdentifier(StreamIssuer, e.Subject)
	var err error
	if e.Delete {
		_, _, err = s.Delete(bg, usersync.Write{ID: uuid.NewString(), TokenIdentifier: ti, Issuer: StreamIssuer, Subject: e.Subject, At: epoch})
	} else {
		_, _, err = s.Upsert(bg, usersync.Write{
			ID: uuid.NewString(), TokenIdentifier: ti, Issuer: StreamIssuer, Subject: e.Subject,
			Version: e.Version, Fields: e.Fields, Profile: e.Profile, At: epoch,
		})
	}
	if err != nil && !errors.Is(err, usersync.ErrDeleted) {
		t.Helper()
		t.Errorf("deliver %+v: %v", e, err)
	}
}

// CompareState returns "" if s holds exactly the users of want (deleted ones
// absent, live ones with the wanted profile and version), or a description
// of the first differences.
func CompareState(ctx context.Context, s usersync.Store, want map[string]State) string {
	var diffs []string
	live := 0
	subjects := make([]string, 0, len(want))
	for sub := range want {
		subjects = append(subjects, sub)
	}
	sort.Strings(subjects)
	for _, sub := range subjects {
		w := want[sub]
		u, err := s.GetByTokenIdentifier(ctx, usersync.TokenIdentifier(StreamIssuer, sub))
		switch {
		case w.Deleted && errors.Is(err, usersync.ErrDeleted):
		case w.Deleted:
			diffs = append(diffs, fmt.Sprintf("%s: want deleted, got %+v, %v", sub, u.Profile, err))
		case err != nil:
			diffs = append(diffs, fmt.Sprintf("%s: %v", sub, err))
		case profileDiff(u.Profile, w.Profile) != "" || u.Version != w.Version:
			diffs = append(diffs, fmt.Sprintf("%s: got %+v v%d, want %+v v%d", sub, u.Profile, u.Version, w.Profile, w.Version))
		}
		if !w.Deleted {
			live++
		}
	}
	if n, err := s.Count(ctx); err != nil || n != live {
		diffs = append(diffs, fmt.Sprintf("Count = %d, %v; want %d", n, err, live))
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "; ")
}
