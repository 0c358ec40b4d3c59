package sessions

import (
	"fmt"
	"testing"
	"time"
)

// TestSnapshotMergesAndExpires holds that endings added one by one, past
// many merges of the recent ones into the base, are all held once, that
// the later of two endings of one key is kept, and that merging at a time
// drops those no longer kept then.
func TestSnapshotMergesAndExpires(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	keep := time.Hour
	e := &snapshot{}
	const n = 5000
	for i := range n {
		add := []Ending{{Issuer: "https://a.test", SessionID: fmt.Sprintf("sess_%d", i), EndedAt: now.Add(time.Duration(i) * time.Millisecond)}}
		if i%10 == 0 {
			add = append(add, Ending{Issuer: "https://a.test", Subject: fmt.Sprintf("user_%d", i), EndedAt: now})
		}
		e = e.with(add, keep, now)
	}
	if got, want := e.len(), n+n/10; got != want {
		t.Fatalf("holds %d endings, want %d", got, want)
	}
	if len(e.recentSessions)+len(e.recentUsers) > mergeAt(len(e.sessions)+len(e.users)) {
		t.Fatalf("%d recent endings were never merged into %d", len(e.recentSessions)+len(e.recentUsers), len(e.sessions)+len(e.users))
	}
	for _, id := range []string{"sess_0", "sess_4999", "sess_2500"} {
		if !has(e.sessions, e.recentSessions, "https://a.test", id) || has(e.sessions, e.recentSessions, "https://b.test", id) {
			t.Fatalf("%s is not held for its issuer alone", id)
		}
	}
	// The same session of another issuer is another ending; a later
	// ending of a held one keeps it longer; an earlier one changes nothing.
	e = e.with([]Ending{{Issuer: "https://b.test", SessionID: "sess_0", EndedAt: now}}, keep, now)
	e = e.with([]Ending{{Issuer: "https://a.test", SessionID: "sess_1", EndedAt: now.Add(2 * time.Hour)}}, keep, now)
	if same := e.with([]Ending{{Issuer: "https://a.test", SessionID: "sess_2", EndedAt: now.Add(-time.Minute)}}, keep, now); same != e {
		t.Fatal("an earlier ending of a held session made a new snapshot")
	}
	if e.len() != n+n/10 || !has(e.sessions, e.recentSessions, "https://b.test", "sess_0") || !has(e.sessions, e.recentSessions, "https://a.test", "sess_0") {
		t.Fatalf("holds %d endings (by key) after another issuer's, want %d", e.len(), n+n/10)
	}
	// An hour and a second later, only the endings that ended after the
	// first second (sess_1001 on), and sess_1's of two hours, are kept.
	e = e.merged(now.Add(keep + time.Second))
	if !has(e.sessions, nil, "https://a.test", "sess_1") || !has(e.sessions, nil, "https://a.test", "sess_4999") || has(e.sessions, nil, "https://a.test", "sess_0") || len(e.users) != 0 {
		t.Fatalf("after the merge at Keep + 1 s: %d sessions, %d users", len(e.sessions), len(e.users))
	}
	if got := e.len(); got != 1+(n-1001) {
		t.Fatalf("after the merge at Keep + 1 s: %d endings, want %d", got, 1+(n-1001))
	}
}

// BenchmarkAdd is the cost of one new ending in a Set that holds
// 100,000: with the merges it leads to, a few hundred entries' copies, not
// a copy of them all.
func BenchmarkAdd(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	var add []Ending
	for i := range 100_000 {
		add = append(add, Ending{Issuer: "https://a.test", SessionID: fmt.Sprintf("sess_%d", i), EndedAt: now})
	}
	e := (&snapshot{}).with(add, time.Hour, now).merged(time.Time{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e = e.with([]Ending{{Issuer: "https://a.test", SessionID: fmt.Sprintf("sess_new_%d", i), EndedAt: now}}, time.Hour, now)
		i++
	}
}

// TestSnapshotKeepsTheLaterOfABatchsTwoEndings holds that two endings of
// one session in one batch keep the session until the later one's end,
// whichever comes first.
func TestSnapshotKeepsTheLaterOfABatchsTwoEndings(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, order := range [][]time.Duration{{-10 * time.Minute, -59 * time.Minute}, {-59 * time.Minute, -10 * time.Minute}} {
		var add []Ending
		for _, d := range order {
			add = append(add, Ending{Issuer: "https://a.test", SessionID: "sess_a", EndedAt: now.Add(d)}, Ending{Issuer: "https://a.test", Subject: "user_a", EndedAt: now.Add(d)})
		}
		e := (&snapshot{}).with(add, time.Hour, now)
		for _, m := range []endings{e.recentSessions, e.recentUsers} {
			for id := range m {
				if until, _ := m.until("https://a.test", id); !until.Equal(now.Add(50 * time.Minute)) {
					t.Errorf("%v: %s kept until %v, want the later ending's %v", order, id, until, now.Add(50*time.Minute))
				}
			}
		}
	}
}
