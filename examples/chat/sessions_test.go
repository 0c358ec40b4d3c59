package main

import (
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/usersynctest"
)

// sessionEvent is Clerk's session.ended, session.removed or
// session.revoked event for session sid of user sub.
func sessionEvent(eventType, sid, sub, status string) []byte {
	now := time.Now().UnixMilli()
	return clerkEvent(eventType, map[string]any{"object": "session", "id": sid, "user_id": sub, "client_id": "client_2x",
		"status": status, "last_active_at": now, "expire_at": now + 7*86400_000, "abandon_at": now + 30*86400_000,
		"created_at": now - 3600_000, "updated_at": now})
}

// TestRevokedSessionIsRefusedOnEveryReplica holds that once one replica
// receives session.revoked, the session's token is refused on every
// replica (the other within its Poll, 100 ms, which the test logs), on
// every path, while the user's other session goes on.
func TestRevokedSessionIsRefusedOnEveryReplica(t *testing.T) {
	for name, url := range backends(t) {
		if name == "memory" {
			continue // one process's memory: no replicas
		}
		t.Run(name, func(t *testing.T) {
			iss, sender := usersynctest.NewIssuer(t), clerktest.NewWebhookSender(t)
			a := newReplica(t, config{databaseURL: url}, iss, sender)
			b := newReplica(t, config{databaseURL: url}, iss, sender)
			revoked := iss.Token(map[string]any{"sub": "user_ada", "name": "Ada", "sid": "sess_laptop"})
			phone := iss.Token(map[string]any{"sub": "user_ada", "name": "Ada", "sid": "sess_phone"})
			paths := [][2]string{{"GET", "/api/users/me"}, {"GET", "/api/messages"}, {"GET", "/api/orgs"}}
			for _, r := range []*testApp{a, b} {
				expect(t, "store the user", r.do("POST", "/api/users/store", revoked, nil), 200)
				for _, p := range paths {
					// Verified and cached before the revocation.
					expect(t, p[0]+" "+p[1]+" before", r.do(p[0], p[1], revoked, nil), 200)
				}
			}

			// Replica a receives the webhook: it refuses at once.
			a.webhook(t, sessionEvent("session.revoked", "sess_laptop", "user_ada", "revoked"))
			start := time.Now()
			for _, p := range paths {
				expect(t, p[0]+" "+p[1]+" on the replica of the webhook", a.do(p[0], p[1], revoked, nil), 401)
			}
			// Replica b learns from the store.
			for b.do("GET", "/api/users/me", revoked, nil).Code != 401 {
				if time.Since(start) > 30*time.Second {
					t.Fatal("replica b did not refuse the revoked session in 30 s")
				}
				time.Sleep(time.Millisecond)
			}
			t.Logf("%s: the other replica refused the revoked session after %v", name, time.Since(start).Round(time.Millisecond))
			for _, r := range []*testApp{a, b} {
				for _, p := range paths {
					w := r.do(p[0], p[1], revoked, nil)
					expect(t, p[0]+" "+p[1]+" after", w, 401)
					if e := errorOf(t, w); e != "unauthorized" || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="session ended"`) {
						t.Fatalf("%s: %q, %q", p[1], e, w.Header().Get("WWW-Authenticate"))
					}
					expect(t, p[0]+" "+p[1]+" of the other session", r.do(p[0], p[1], phone, nil), 200)
				}
				expect(t, "sending with the revoked session", r.do("POST", "/api/messages", revoked, map[string]string{"body": "hi"}), 401)
			}
			// A redelivery and a later session.removed are harmless.
			b.webhook(t, sessionEvent("session.revoked", "sess_laptop", "user_ada", "revoked"))
			b.webhook(t, sessionEvent("session.removed", "sess_laptop", "user_ada", "removed"))
			expect(t, "the other session after the redeliveries", b.do("GET", "/api/users/me", phone, nil), 200)
		})
	}
}
