package usersynctest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sessions"
)

// The rules of sessions.Store, named Sessions/...: they run only on stores
// that implement it.

// ending is an ending of session sid (or, without one, of every session
// of sub) of the test issuer, ended ms milliseconds after the epoch.
func ending(sid, sub string, ms int) sessions.Ending {
	return sessions.Ending{Issuer: orgIssuer, SessionID: sid, Subject: sub, EndedAt: epoch.Add(time.Duration(ms) * time.Millisecond)}
}

// endSessions records endings, failing the test on an error.
func (f *storeFixture) endSessions(endings ...sessions.Ending) {
	f.t.Helper()
	if err := f.sessions.EndSessions(bg, endings...); err != nil {
		f.t.Fatalf("EndSessions: %v", err)
	}
}

// endedSessions lists every ending recorded, page by page of n.
func (f *storeFixture) endedSessions(n int) []sessions.Ending {
	f.t.Helper()
	var all []sessions.Ending
	var at time.Time
	var seq int64
	for {
		page, err := f.sessions.EndedSessions(bg, at, seq, n)
		if err != nil {
			f.t.Fatalf("EndedSessions: %v", err)
		}
		all = append(all, page...)
		if len(page) < n {
			return all
		}
		at, seq = page[len(page)-1].RecordedAt, page[len(page)-1].Seq
	}
}

// keys returns each ending's key and EndedAt, in order.
func endingKeys(es []sessions.Ending) []string {
	var ks []string
	for _, e := range es {
		ks = append(ks, fmt.Sprintf("%s|%s|%s@%d", e.Issuer, e.SessionID, e.Subject, e.EndedAt.UnixMilli()-epoch.UnixMilli()))
	}
	return ks
}

var sessionCases = []storeCase{
	{"Sessions/RecordedAndListed", func(t *testing.T, f *storeFixture) {
		before := time.Now().Add(-time.Minute) // a store's clock may be another machine's
		f.endSessions(ending("sess_1", "alice", 1), ending("", "bob", 2))
		f.endSessions(ending("sess_2", "", 3))
		got := f.endedSessions(1000)
		want := []string{orgIssuer + "|sess_1|alice@1", orgIssuer + "||bob@2", orgIssuer + "|sess_2|@3"}
		if k := endingKeys(got); strings.Join(k, " ") != strings.Join(want, " ") {
			t.Fatalf("EndedSessions = %q, want %q", k, want)
		}
		for i, e := range got {
			switch {
			case e.Seq <= 0:
				t.Errorf("ending %d: Seq %d, want above 0", i, e.Seq)
			case e.RecordedAt.Before(before) || e.RecordedAt.After(time.Now().Add(time.Minute)):
				t.Errorf("ending %d: RecordedAt %v is not the store's time of recording", i, e.RecordedAt)
			case e.RecordedAt.Truncate(time.Millisecond) != e.RecordedAt:
				t.Errorf("ending %d: RecordedAt %v is not to the millisecond", i, e.RecordedAt)
			case i > 0 && (e.RecordedAt.Before(got[i-1].RecordedAt) || e.RecordedAt.Equal(got[i-1].RecordedAt) && e.Seq <= got[i-1].Seq):
				t.Errorf("ending %d (%v, %d) is not after ending %d (%v, %d)", i, e.RecordedAt, e.Seq, i-1, got[i-1].RecordedAt, got[i-1].Seq)
			}
		}
		// Page by page, from any position, the same list.
		if k := endingKeys(f.endedSessions(1)); strings.Join(k, " ") != strings.Join(want, " ") {
			t.Fatalf("EndedSessions by pages of 1 = %q, want %q", k, want)
		}
		rest, err := f.sessions.EndedSessions(bg, got[0].RecordedAt, got[0].Seq, 10)
		if err != nil || strings.Join(endingKeys(rest), " ") != strings.Join(want[1:], " ") {
			t.Fatalf("EndedSessions after the first = %q, %v; want %q", endingKeys(rest), err, want[1:])
		}
		if rest, err := f.sessions.EndedSessions(bg, got[2].RecordedAt, got[2].Seq, 10); err != nil || len(rest) != 0 {
			t.Fatalf("EndedSessions after the last = %q, %v; want none", endingKeys(rest), err)
		}
	}},
	{"Sessions/RecordedOnce", func(t *testing.T, f *storeFixture) {
		f.endSessions(ending("sess_1", "alice", 5))
		// A redelivery, a later ending of the same session (removed after
		// ended), one that names no subject: the same session.
		f.endSessions(ending("sess_1", "alice", 5), ending("sess_1", "alice", 9), ending("sess_1", "", 2))
		// Every session of alice is another ending than one of hers.
		f.endSessions(ending("", "alice", 7), ending("", "alice", 8))
		got := endingKeys(f.endedSessions(1000))
		want := []string{orgIssuer + "|sess_1|alice@5", orgIssuer + "||alice@7"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("EndedSessions = %q, want %q", got, want)
		}
	}},
	{"Sessions/KeysByteForByte", func(t *testing.T, f *storeFixture) {
		keys := []string{"sess_a", "sess_A", "sess_a ", "sess_ä", "sess_a\u0308"}
		for i, k := range keys {
			f.endSessions(ending(k, "", i+1), ending("", k, i+1))
		}
		other := sessions.Ending{Issuer: orgIssuer + "/other", SessionID: "sess_a", EndedAt: epoch}
		f.endSessions(other)
		if got := f.endedSessions(1000); len(got) != 2*len(keys)+1 {
			t.Fatalf("EndedSessions holds %d endings, want %d: %q", len(got), 2*len(keys)+1, endingKeys(got))
		} else {
			for _, e := range got {
				if e.Subject != "" && !strings.HasPrefix(e.Subject, "sess_") || e.SessionID != "" && !strings.HasPrefix(e.SessionID, "sess_") {
					t.Errorf("ending %q came back changed", endingKeys([]sessions.Ending{e}))
				}
			}
		}
	}},
	{"Sessions/InvalidRecordsNothing", func(t *testing.T, f *storeFixture) {
		long := strings.Repeat("s", 256)
		for name, bad := range map[string]sessions.Ending{
			"no issuer":           {SessionID: "sess_1", EndedAt: epoch},
			"no session, no user": {Issuer: orgIssuer, EndedAt: epoch},
			"long session":        {Issuer: orgIssuer, SessionID: long, EndedAt: epoch},
			"long subject":        {Issuer: orgIssuer, Subject: long, EndedAt: epoch},
			"long issuer":         {Issuer: long, SessionID: "sess_1", EndedAt: epoch},
			"no time":             {Issuer: orgIssuer, SessionID: "sess_1"},
			"before the epoch":    {Issuer: orgIssuer, SessionID: "sess_1", EndedAt: time.UnixMilli(-1)},
			"after 9999":          {Issuer: orgIssuer, SessionID: "sess_1", EndedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
			"issuer with a slash": {Issuer: orgIssuer + "/", SessionID: "sess_1", EndedAt: epoch},
			"NUL":                 {Issuer: orgIssuer, SessionID: "sess_\x00", EndedAt: epoch},
			"not UTF-8":           {Issuer: orgIssuer, Subject: "user_\xff", EndedAt: epoch},
		} {
			if err := f.sessions.EndSessions(bg, ending("sess_good", "", 1), bad); !errors.Is(err, usersync.ErrInvalid) {
				t.Errorf("%s: EndSessions = %v, want ErrInvalid", name, err)
			}
		}
		if got := f.endedSessions(1000); len(got) != 0 {
			t.Fatalf("a refused call recorded %q", endingKeys(got))
		}
		f.endSessions(ending("", strings.Repeat("u", 255), 1), sessions.Ending{Issuer: strings.Repeat("i", 255), SessionID: strings.Repeat("s", 255), EndedAt: epoch})
		for _, limit := range []int{0, -1, 1001} {
			if _, err := f.sessions.EndedSessions(bg, time.Time{}, 0, limit); !errors.Is(err, usersync.ErrInvalid) {
				t.Errorf("EndedSessions(limit %d) = %v, want ErrInvalid", limit, err)
			}
		}
	}},
	{"Sessions/Pruned", func(t *testing.T, f *storeFixture) {
		f.endSessions(ending("sess_old", "", 1000), ending("", "olduser", 1000), ending("sess_edge", "", 2000), ending("sess_new", "", 3000))
		n, err := f.sessions.PruneEndedSessions(bg, epoch.Add(2*time.Second))
		if err != nil || n != 2 {
			t.Fatalf("PruneEndedSessions = %d, %v; want 2 (those that ended before)", n, err)
		}
		want := []string{orgIssuer + "|sess_edge|@2000", orgIssuer + "|sess_new|@3000"}
		if got := endingKeys(f.endedSessions(1000)); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("after the prune: %q, want %q", got, want)
		}
		// A pruned ending recorded again is a new one.
		f.endSessions(ending("sess_old", "", 4000))
		if got := f.endedSessions(1000); len(got) != 3 || got[2].SessionID != "sess_old" {
			t.Fatalf("after recording a pruned ending again: %q", endingKeys(got))
		}
	}},
	{"Sessions/UserDeleteEndsEverySession", func(t *testing.T, f *storeFixture) {
		f.upsert(f.write("alice", 1, usersync.AllFields, full("alice")), usersync.Created)
		f.upsert(f.write("bob", 1, usersync.AllFields, full("bob")), usersync.Created)
		tomb := f.delete("alice", usersync.Deleted)
		f.delete("alice", usersync.Stale)   // already gone: nothing new
		f.delete("carol", usersync.Deleted) // never seen: her tokens may be out there
		got := f.endedSessions(1000)
		if len(got) != 2 {
			t.Fatalf("after deleting alice twice and carol: %q, want one ending each", endingKeys(got))
		}
		e := got[0]
		if e.Issuer != orgIssuer || e.Subject != "alice" || e.SessionID != "" || !e.EndedAt.Equal(tomb.DeletedAt.Truncate(time.Millisecond)) {
			t.Fatalf("alice's ending = %+v, want every session of alice, ended at %v", e, tomb.DeletedAt)
		}
		if got[1].Subject != "carol" || got[1].SessionID != "" {
			t.Fatalf("carol's ending = %+v", got[1])
		}
	}},
	{"Sessions/ConcurrentRecordOnce", func(t *testing.T, f *storeFixture) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				errs <- f.sessions.EndSessions(bg, ending("sess_same", "alice", 1), ending(fmt.Sprintf("sess_%02d", i), "", 2), ending("", "bob", 3))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("EndSessions: %v", err)
			}
		}
		seen := map[string]int{}
		for _, e := range f.endedSessions(1000) {
			seen[e.SessionID+"|"+e.Subject]++
		}
		if len(seen) != 18 || seen["sess_same|alice"] != 1 || seen["|bob"] != 1 {
			t.Fatalf("concurrent recordings stored %v, want 18 endings, each once", seen)
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("%s recorded %d times", k, n)
			}
		}
	}},
}
