package usersynctest

import (
	"context"
	"testing"
	"time"

	"github.com/usersync/usersync/feed"
)

// consumerWait is how long WaitForConsumer waits for a consumer before it
// fails the test: long enough for a slow machine, short of a hung test.
const consumerWait = time.Minute

// WaitForConsumer waits until the change-feed consumer named consumer has
// passed every change that store's feed holds when it is called — its
// handler has done (or parked) each of them, in whichever process runs it
// — and fails the test if that takes longer than a minute or outlives
// the test. It is feed.WaitCaughtUp for a test: wait with it for a
// handler's effects instead of sleeping.
//
//	syncer.Delete(ctx, issuer, "user_1")
//	usersynctest.WaitForConsumer(t, store, "erase-messages")
//	// the deleted user's messages are erased
func WaitForConsumer(t testing.TB, store feed.Store, consumer string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), consumerWait)
	defer cancel()
	if err := feed.WaitCaughtUp(ctx, store, consumer); err != nil {
		t.Fatalf("usersynctest: waiting for the change-feed consumer %q: %v", consumer, err)
	}
}
