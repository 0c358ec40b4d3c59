package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/testdb"
)

// flakyMessages fails the first fails erasures of each user, and blocks
// the erasure of block until the consumer is stopped: a crash mid-batch.
type flakyMessages struct {
	messages
	mu       sync.Mutex
	fails    int
	tries    map[string]int
	block    string
	blocking chan struct{} // closed when the blocked erasure began
}

func (f *flakyMessages) erase(ctx context.Context, userID string) error {
	f.mu.Lock()
	f.tries[userID]++
	try := f.tries[userID]
	block := f.block
	f.mu.Unlock()
	if userID == block {
		close(f.blocking)
		<-ctx.Done() // killed mid-batch: this erasure never finishes
		return ctx.Err()
	}
	if try <= f.fails {
		return errors.New("the database hiccupped")
	}
	return f.messages.erase(ctx, userID)
}

// dyingStore is the store as a process about to be killed sees it: its
// lease renewals, which would save its position, hang (a stuck
// connection) and never land, and once dead it releases nothing (its
// lease is left to expire).
type dyingStore struct {
	chatStore
	dead atomic.Bool
}

var errDead = errors.New("the process is dead")

func (d *dyingStore) RenewLease(ctx context.Context, _, _ string, _ time.Duration, _ int64) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}

func (d *dyingStore) ReleaseLease(ctx context.Context, name, holder string) error {
	if d.dead.Load() {
		return errDead
	}
	return d.chatStore.ReleaseLease(ctx, name, holder)
}

// TestDeletedUsersMessagesAreErased: the chat's consumer of the change feed
// erases the bodies of a deleted user's messages, though its handler fails
// twice for every user and the consumer's process is killed in the middle
// of a batch (it never saved its position, and its lease expires) and
// another one takes over: the changes the dead one had handled are
// delivered again, and erasing twice changes nothing.
func TestDeletedUsersMessagesAreErased(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ta := newTestApp(t, url)
			var tokens []string
			for i := range 8 {
				tok := ta.issuer.Token(map[string]any{"sub": fmt.Sprintf("user_%d", i), "name": fmt.Sprintf("User %d", i)})
				tokens = append(tokens, tok)
				for k := range 3 {
					expect(t, "send", ta.do("POST", "/api/messages", tok, map[string]string{"body": fmt.Sprintf("message %d of user %d", k, i)}), 201)
				}
			}
			ids := map[string]string{} // user ID -> subject
			for _, m := range decode[[]messageJSON](t, ta.do("GET", "/api/messages?limit=100", tokens[0], nil)) {
				ids[m.UserID] = m.Author
			}
			deleted := map[string]bool{"User 1": true, "User 2": true, "User 4": true, "User 6": true, "User 7": true}
			for i := range 8 {
				if deleted[fmt.Sprintf("User %d", i)] {
					expect(t, "user.deleted", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", clerktest.UserDeletedEvent(fmt.Sprintf("user_%d", i)))), 200)
				}
			}
			var blockID string
			for id, author := range ids {
				if author == "User 4" {
					blockID = id
				}
			}

			// The first process: every erasure fails twice, and the one of
			// User 4 hangs until the process is killed.
			flaky := &flakyMessages{messages: ta.msgs, fails: 2, tries: map[string]int{}, block: blockID, blocking: make(chan struct{})}
			ta.msgs = flaky
			ta.feedLease = 2 * time.Second // a takeover in a test's time
			dying := &dyingStore{chatStore: ta.store}
			if err := ta.wire(dying); err != nil {
				t.Fatal(err)
			}
			stop := ta.consumeInBackground(context.Background())
			select {
			case <-flaky.blocking:
			case <-time.After(20 * time.Second):
				t.Fatal("the consumer never reached User 4")
			}
			dying.dead.Store(true) // killed
			stop()

			// The next process, on the same database.
			flaky.mu.Lock()
			flaky.block = ""
			flaky.mu.Unlock()
			if err := ta.wire(ta.store); err != nil {
				t.Fatal(err)
			}
			stop = ta.consumeInBackground(context.Background())
			defer stop()
			all := func() []messageJSON {
				return decode[[]messageJSON](t, ta.do("GET", "/api/messages?limit=100", tokens[0], nil))
			}
			waitErased := time.Now().Add(30 * time.Second)
			for {
				done := true
				for _, m := range all() {
					if m.Author == "deleted user" && m.Body != erased {
						done = false
					}
				}
				if done {
					break
				}
				if time.Now().After(waitErased) {
					t.Fatalf("not every deleted user's messages were erased: %+v", all())
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, m := range all() {
				wasDeleted := deleted[ids[m.UserID]]
				switch {
				case wasDeleted && (m.Body != erased || m.Author != "deleted user"):
					t.Fatalf("a deleted user's message: %+v", m)
				case !wasDeleted && m.Body == erased:
					t.Fatalf("a live user's message was erased: %+v", m)
				}
			}
			flaky.mu.Lock()
			defer flaky.mu.Unlock()
			for id, author := range ids {
				if deleted[author] && flaky.tries[id] < 3 {
					t.Fatalf("%s's erasure was tried %d times; the handler fails twice first", author, flaky.tries[id])
				}
				// Users 1 and 2 come before User 4 in the feed: the dead
				// process erased them, never saved that, and the next one
				// erased them again.
				if (author == "User 1" || author == "User 2") && flaky.tries[id] < 4 {
					t.Fatalf("%s's erasure was tried %d times; want its redelivery after the crash too", author, flaky.tries[id])
				}
			}
		})
	}
}

// TestNoMessageOfADeletedAuthor: a message whose author was deleted while
// it was being sent (after the request's user was loaded) is refused, so
// that no message lands after its author's erasure and keeps its body.
func TestNoMessageOfADeletedAuthor(t *testing.T) {
	for _, b := range testdb.Backends { // memMessages does not see the store: best effort
		t.Run(b.Name, func(t *testing.T) {
			ta := newTestApp(t, databaseURL(t, b))
			tok := ta.issuer.Token(map[string]any{"sub": "user_gone", "name": "Gone"})
			expect(t, "send", ta.do("POST", "/api/messages", tok, map[string]string{"body": "hello"}), 201)
			ms := decode[[]messageJSON](t, ta.do("GET", "/api/messages?limit=10", tok, nil))
			if len(ms) != 1 {
				t.Fatalf("messages %+v", ms)
			}
			id := ms[0].UserID
			expect(t, "user.deleted", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", clerktest.UserDeletedEvent("user_gone"))), 200)
			if _, err := ta.msgs.add(context.Background(), id, "sent as the author was deleted", time.Now()); !errors.Is(err, errAuthorDeleted) {
				t.Fatalf("add for a deleted author: %v, want errAuthorDeleted", err)
			}
			if n, err := ta.msgs.countBy(context.Background(), id); err != nil || n != 1 {
				t.Fatalf("the deleted author has %d messages (%v), want 1", n, err)
			}
		})
	}
}
