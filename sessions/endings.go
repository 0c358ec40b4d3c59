package sessions

import (
	"maps"
	"math"
	"time"
)

// snapshot is the set of endings a Set holds, never changed once
// published: a writer publishes another. New endings go to the small
// recent maps, copied on each change, and are merged into the base maps
// once there are enough of them (mergeAt): an ending costs a few hundred
// entries' copies, not a copy of every ending held.
type snapshot struct {
	sessions, users             endings // session endings by session ID, user endings by subject
	recentSessions, recentUsers endings // added since the last merge
}

// endings holds endings by session ID or subject: keyed by that alone, so
// that a check hashes one short string, with the issuers that ended one of
// that name (nearly always one) in the value.
type endings map[string][]kept

// kept is one issuer's ending, and until when it is kept.
type kept struct {
	issuer string
	until  time.Time
}

// has reports whether issuer ended id in m or in recent.
func has(m, recent endings, issuer, id string) bool {
	for _, k := range m[id] {
		if k.issuer == issuer {
			return true
		}
	}
	if len(recent) == 0 {
		return false
	}
	for _, k := range recent[id] {
		if k.issuer == issuer {
			return true
		}
	}
	return false
}

// until returns until when issuer's ending of id is kept in m, if it is.
func (m endings) until(issuer, id string) (time.Time, bool) {
	for _, k := range m[id] {
		if k.issuer == issuer {
			return k.until, true
		}
	}
	return time.Time{}, false
}

// put keeps issuer's ending of id until until in m.
func (m endings) put(issuer, id string, until time.Time) {
	ks := []kept{{issuer, until}}
	for _, k := range m[id] {
		if k.issuer != issuer {
			ks = append(ks, k)
		}
	}
	m[id] = ks
}

// len returns how many endings the snapshot holds (by key: the endings
// of one session ID by two issuers count once).
func (e *snapshot) len() int {
	n := len(e.sessions) + len(e.users)
	for id := range e.recentSessions {
		if _, ok := e.sessions[id]; !ok {
			n++
		}
	}
	for id := range e.recentUsers {
		if _, ok := e.users[id]; !ok {
			n++
		}
	}
	return n
}

// with returns the snapshot with the endings of add (by session ID, or
// without one by subject) that are kept past now and that it does not
// hold until then already, or e itself if there are none.
func (e *snapshot) with(add []Ending, keep time.Duration, now time.Time) *snapshot {
	var next *snapshot
	for _, a := range add {
		until := a.EndedAt.Add(keep)
		if !now.Before(until) {
			continue // every token of the session has expired
		}
		cur := e // what the snapshot holds so far: next, once made
		if next != nil {
			cur = next
		}
		base, recent, id := cur.sessions, cur.recentSessions, a.SessionID
		if id == "" {
			base, recent, id = cur.users, cur.recentUsers, a.Subject
		}
		if was, ok := base.until(a.Issuer, id); ok && !until.After(was) {
			continue
		}
		if was, ok := recent.until(a.Issuer, id); ok && !until.After(was) {
			continue
		}
		if next == nil {
			c := *e
			next = &c
			next.recentSessions, next.recentUsers = maps.Clone(e.recentSessions), maps.Clone(e.recentUsers)
		}
		if a.SessionID != "" {
			if next.recentSessions == nil {
				next.recentSessions = endings{}
			}
			next.recentSessions.put(a.Issuer, id, until)
		} else {
			if next.recentUsers == nil {
				next.recentUsers = endings{}
			}
			next.recentUsers.put(a.Issuer, id, until)
		}
	}
	if next == nil {
		return e
	}
	if len(next.recentSessions)+len(next.recentUsers) > mergeAt(len(next.sessions)+len(next.users)) {
		return next.merged(time.Time{})
	}
	return next
}

// mergeAt is how many recent endings are merged into a base of n: twice
// its square root (at least 64), which makes the copies of the recent
// ones and the merges cost about as much, and an ending a few hundred
// entries' copies, whatever n.
func mergeAt(n int) int { return max(64, 2*int(math.Sqrt(float64(n)))) }

// merged returns the snapshot with its recent endings in its base maps,
// and without the endings no longer kept at now (none with a zero now).
func (e *snapshot) merged(now time.Time) *snapshot {
	return &snapshot{sessions: merge(e.sessions, e.recentSessions, now), users: merge(e.users, e.recentUsers, now)}
}

// merge returns a map of the endings of base and recent kept at now (all
// of them with a zero now). Lists are shared, never changed in place.
func merge(base, recent endings, now time.Time) endings {
	out := make(endings, len(base)+len(recent))
	for id, ks := range base {
		if now.IsZero() {
			out[id] = ks
			continue
		}
		var live []kept
		for _, k := range ks {
			if now.Before(k.until) {
				live = append(live, k)
			}
		}
		if live != nil {
			out[id] = live
		}
	}
	for id, ks := range recent {
		for _, k := range ks {
			if !now.IsZero() && !now.Before(k.until) {
				continue
			}
			if was, ok := out.until(k.issuer, id); !ok || k.until.After(was) {
				out.put(k.issuer, id, k.until)
			}
		}
	}
	return out
}
