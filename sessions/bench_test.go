package sessions_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
)

// BenchmarkCheckSession is the check of every request: a live session's
// identity and an ended one's, against a Set of 10,000 ended sessions and
// 1,000 deleted users.
func BenchmarkCheckSession(b *testing.B) {
	ctx := context.Background()
	set := newBenchSet(b, ctx)
	live := &usersync.Identity{Issuer: issuer, Subject: "user_2live", SessionID: "sess_2liveXXXXXXXXXXXXXXXXXXXXXX"}
	ended := &usersync.Identity{Issuer: issuer, Subject: "user_2live", SessionID: fmt.Sprintf("sess_%026d", 42)}
	b.Run("live", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := set.CheckSession(live); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ended", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if set.CheckSession(ended) == nil {
				b.Fatal("an ended session passed")
			}
		}
	})
}

// newBenchSet returns a Set over a memstore holding 10,000 ended sessions
// and 1,000 deleted users.
func newBenchSet(b *testing.B, ctx context.Context) *sessions.Set {
	store := memstore.New()
	now := time.Now()
	var endings []sessions.Ending
	for i := range 10_000 {
		endings = append(endings, sessions.Ending{Issuer: issuer, SessionID: fmt.Sprintf("sess_%026d", i), Subject: fmt.Sprintf("user_%d", i), EndedAt: now})
	}
	for i := range 1000 {
		endings = append(endings, sessions.Ending{Issuer: issuer, Subject: fmt.Sprintf("user_gone%d", i), EndedAt: now})
	}
	if err := store.EndSessions(ctx, endings...); err != nil {
		b.Fatal(err)
	}
	set, err := sessions.New(ctx, sessions.Config{Store: store, Poll: 30 * time.Minute, MaxStale: time.Hour}) // no reads during the benchmark
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { set.Close() })
	if set.Len() != 11_000 {
		b.Fatalf("the Set holds %d endings, want 11,000", set.Len())
	}
	return set
}

const issuer = "https://example.clerk.accounts.dev"
