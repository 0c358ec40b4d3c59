package sessions_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
)

var bg = context.Background()

// identity is a token's identity of user sub in session sid.
func identity(sub, sid string) *usersync.Identity {
	return &usersync.Identity{Issuer: issuer, Subject: sub, SessionID: sid, TokenIdentifier: usersync.TokenIdentifier(issuer, sub)}
}

// newSet returns a Set over store that reads it every 5 ms and trusts what
// it read for a minute: tests of staleness set their own.
func newSet(t *testing.T, store sessions.Store, edit func(*sessions.Config)) *sessions.Set {
	t.Helper()
	cfg := sessions.Config{Store: store, Poll: 5 * time.Millisecond, MaxStale: time.Minute, Logger: slog.New(slog.DiscardHandler)}
	if edit != nil {
		edit(&cfg)
	}
	set, err := sessions.New(bg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return set
}

// ended reports whether set refuses id as an ended session, failing the
// test on any other error.
func ended(t *testing.T, set *sessions.Set, id *usersync.Identity) bool {
	t.Helper()
	err := set.CheckSession(id)
	if err != nil && !errors.Is(err, usersync.ErrSessionEnded) {
		t.Fatalf("CheckSession(%s, %s) = %v, want nil or ErrSessionEnded", id.Subject, id.SessionID, err)
	}
	return err != nil
}

// eventually waits until cond holds, checking every millisecond; it fails
// the test after 30 s, a bound no correct run comes near.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEndRefusesTheSessionOnly(t *testing.T) {
	set := newSet(t, memstore.New(), nil)
	if err := set.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1", Subject: "user_1"}); err != nil {
		t.Fatal(err)
	}
	err := set.CheckSession(identity("user_1", "sess_1"))
	var desc interface{ Description() string }
	switch {
	case !errors.Is(err, usersync.ErrSessionEnded) || !errors.Is(err, usersync.ErrInvalidToken):
		t.Fatalf("the ended session's check = %v, want ErrSessionEnded (an ErrInvalidToken)", err)
	case !errors.As(err, &desc) || desc.Description() != "session ended":
		t.Fatalf("the error %v has no Description \"session ended\" for the 401's challenge", err)
	}
	for _, id := range []*usersync.Identity{
		identity("user_1", "sess_2"), // the user's other session
		identity("user_1", "sess_1 "),
		identity("user_1", "SESS_1"),
		{Issuer: issuer + "/other", Subject: "user_1", SessionID: "sess_1"}, // another issuer's session of that ID
		identity("user_1", ""),                                              // a token without a session
	} {
		if ended(t, set, id) {
			t.Errorf("%s %q %q is refused; only the ended session is", id.Issuer, id.Subject, id.SessionID)
		}
	}
}

func TestAnotherReplicaLearns(t *testing.T) {
	store := memstore.New()
	a, b := newSet(t, store, nil), newSet(t, store, nil)
	id := identity("user_1", "sess_1")
	if ended(t, b, id) {
		t.Fatal("refused before it ended")
	}
	// An ending before any token of the session was seen holds too.
	if err := a.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1"}, sessions.Ending{Issuer: issuer, SessionID: "sess_never_seen"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "replica b did not learn of the ending", func() bool { return ended(t, b, id) })
	if !ended(t, b, identity("user_9", "sess_never_seen")) {
		t.Fatal("b refuses one ending of a batch and not the other")
	}
	// Redelivered: harmless.
	if err := a.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1"}); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 2 || !ended(t, a, id) {
		t.Fatalf("after a redelivery a holds %d endings", a.Len())
	}
}

func TestDeletedUserSessionsEnd(t *testing.T) {
	store := memstore.New()
	set := newSet(t, store, nil)
	syncer, err := usersync.New(usersync.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	w := usersync.Write{Issuer: issuer, Subject: "user_1", TokenIdentifier: usersync.TokenIdentifier(issuer, "user_1")}
	if _, _, err := syncer.Upsert(bg, w); err != nil {
		t.Fatal(err)
	}
	if _, _, err := syncer.Delete(bg, issuer, "user_1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted user's sessions were not refused", func() bool { return ended(t, set, identity("user_1", "sess_any")) })
	for _, id := range []*usersync.Identity{identity("user_1", ""), identity("user_1", "sess_other")} {
		if !ended(t, set, id) {
			t.Errorf("a token of the deleted user (session %q) passes", id.SessionID)
		}
	}
	if ended(t, set, identity("user_2", "sess_any")) {
		t.Error("another user's session is refused")
	}
}

// gated is a sessions.Store whose reads can be made to fail, as a store
// that is down.
type gated struct {
	sessions.Store
	down  atomic.Bool
	reads atomic.Int64
}

var errDown = errors.New("the store is down")

func (g *gated) EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) ([]sessions.Ending, error) {
	g.reads.Add(1)
	if g.down.Load() {
		return nil, errDown
	}
	return g.Store.EndedSessions(ctx, at, seq, limit)
}

func TestStaleSetRefusesUntilCaughtUp(t *testing.T) {
	store := &gated{Store: memstore.New()}
	set := newSet(t, store, func(c *sessions.Config) { c.MaxStale = 50 * time.Millisecond })
	id := identity("user_1", "sess_1")
	if err := set.CheckSession(id); err != nil {
		t.Fatalf("a fresh set refuses a live session: %v", err)
	}
	store.down.Store(true)
	// Another replica ends the session while this one cannot read.
	if err := store.EndSessions(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1", EndedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var unknown error
	eventually(t, "the set never went stale while its store was down", func() bool {
		unknown = set.CheckSession(identity("user_2", "sess_2"))
		return unknown != nil
	})
	var status interface{ HTTPStatus() int }
	if errors.Is(unknown, usersync.ErrSessionEnded) || !errors.As(unknown, &status) || status.HTTPStatus() != http.StatusServiceUnavailable {
		t.Fatalf("a stale set's check = %v, want an error whose HTTPStatus is 503", unknown)
	}
	store.down.Store(false)
	// The first check it answers again already knows of the ending: it
	// catches up before it trusts its set.
	for {
		err := set.CheckSession(id)
		if errors.Is(err, usersync.ErrSessionEnded) {
			break
		}
		if err == nil {
			t.Fatal("the set trusted itself again before it read the ending recorded while it was stale")
		}
		time.Sleep(time.Millisecond)
	}
	if err := set.CheckSession(identity("user_2", "sess_2")); err != nil {
		t.Fatalf("once caught up, a live session's check = %v", err)
	}
}

func TestStartCatchesUp(t *testing.T) {
	store := &gated{Store: memstore.New()}
	for _, sid := range []string{"sess_1", "sess_2"} {
		if err := store.EndSessions(bg, sessions.Ending{Issuer: issuer, SessionID: sid, EndedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	set := newSet(t, store, nil)
	if !ended(t, set, identity("user_1", "sess_2")) || set.Len() != 2 {
		t.Fatalf("New returned before reading the endings kept (holds %d)", set.Len())
	}
	// A replica that starts while the store is down trusts nothing.
	store.down.Store(true)
	down := newSet(t, store, func(c *sessions.Config) { c.StartupWait = 10 * time.Millisecond })
	if err := down.CheckSession(identity("user_3", "sess_3")); err == nil || errors.Is(err, usersync.ErrSessionEnded) {
		t.Fatalf("a set that could not read its store at start answers %v, want its 503 error", err)
	}
	store.down.Store(false)
	eventually(t, "the set never caught up after its store came back", func() bool {
		return down.CheckSession(identity("user_3", "sess_3")) == nil
	})
	if !ended(t, down, identity("user_1", "sess_1")) {
		t.Fatal("caught up without the endings kept")
	}
}

// lateStore makes an ending visible only after one recorded later, as a
// database does when the first's transaction commits after the second's.
type lateStore struct {
	sessions.Store
	mu     sync.Mutex
	hidden map[string]bool // session IDs not visible yet
}

func (l *lateStore) EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) ([]sessions.Ending, error) {
	all, err := l.Store.EndedSessions(ctx, at, seq, limit)
	l.mu.Lock()
	defer l.mu.Unlock()
	var visible []sessions.Ending
	for _, e := range all {
		if !l.hidden[e.SessionID] {
			visible = append(visible, e)
		}
	}
	return visible, err
}

func TestLateCommitIsNotMissed(t *testing.T) {
	store := &lateStore{Store: memstore.New(), hidden: map[string]bool{"sess_early": true}}
	a := newSet(t, store, nil)
	b := newSet(t, store, nil)
	if err := store.EndSessions(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_early", EndedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// The later ending is recorded in a later millisecond.
	early, err := store.Store.EndedSessions(bg, time.Time{}, 0, 10)
	if err != nil || len(early) != 1 {
		t.Fatal(early, err)
	}
	for !time.Now().Truncate(time.Millisecond).After(early[0].RecordedAt) {
		runtime.Gosched()
	}
	if err := a.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_later"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b never read the later ending", func() bool { return ended(t, b, identity("u", "sess_later")) })
	// b has read past sess_early's position; its transaction commits now.
	store.mu.Lock()
	store.hidden = nil
	store.mu.Unlock()
	eventually(t, "b missed an ending whose transaction committed after a later one's", func() bool { return ended(t, b, identity("u", "sess_early")) })
}

func TestEndingsExpireAfterKeep(t *testing.T) {
	store := memstore.New()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sessions.SetPruneInterval(10 * time.Millisecond)
	defer sessions.SetPruneInterval(time.Minute)
	set := newSet(t, store, func(c *sessions.Config) { c.Now, c.Keep = clock, time.Hour })
	// An ending older than Keep (a redelivery days later) is harmless:
	// every token of the session has expired.
	if err := set.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_old", EndedAt: clock().Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := set.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1", EndedAt: clock().Add(-30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1 || ended(t, set, identity("u", "sess_old")) || !ended(t, set, identity("u", "sess_1")) {
		t.Fatalf("the set holds %d endings; want the one still kept", set.Len())
	}
	// The store prunes what is no longer kept.
	eventually(t, "the ending older than Keep was not pruned from the store", func() bool {
		es, err := store.EndedSessions(bg, time.Time{}, 0, 10)
		return err == nil && len(es) == 1 && es[0].SessionID == "sess_1"
	})
	advance(31 * time.Minute)
	eventually(t, "an ending past Keep was not dropped from memory", func() bool { return set.Len() == 0 })
	if ended(t, set, identity("u", "sess_1")) {
		t.Fatal("an ending past Keep is still refused")
	}
}

func TestConfigAndInputErrors(t *testing.T) {
	for name, cfg := range map[string]sessions.Config{
		"no store":               {},
		"MaxStale not over Poll": {Store: memstore.New(), Poll: time.Second, MaxStale: time.Second},
	} {
		if _, err := sessions.New(bg, cfg); !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
	set := newSet(t, memstore.New(), nil)
	err := set.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_ok"}, sessions.Ending{Issuer: issuer})
	if !errors.Is(err, usersync.ErrInvalid) || set.Len() != 0 {
		t.Fatalf("End with a malformed ending = %v, holding %d; want ErrInvalid and none", err, set.Len())
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	set := newSet(t, memstore.New(), nil)
	if err := set.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1"}, sessions.Ending{Issuer: issuer, Subject: "user_gone"}); err != nil {
		t.Fatal(err)
	}
	live, gone := identity("user_1", "sess_2"), identity("user_1", "sess_1")
	if n := testing.AllocsPerRun(100, func() { _ = set.CheckSession(live); _ = set.CheckSession(gone) }); n != 0 {
		t.Fatalf("CheckSession allocates %v times", n)
	}
}

func TestTelemetry(t *testing.T) {
	rec := telemetrytest.New(t)
	store := &gated{Store: memstore.New()}
	set := newSet(t, store, func(c *sessions.Config) { c.MeterProvider = rec.MeterProvider })
	if err := set.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1"}, sessions.Ending{Issuer: issuer, Subject: "user_gone"}); err != nil {
		t.Fatal(err)
	}
	if held, ok := rec.Gauge(t, "usersync.sessions.held"); !ok || held != 2 {
		t.Errorf("usersync.sessions.held = %v, %v; want 2", held, ok)
	}
	if age, ok := rec.Gauge(t, "usersync.sessions.age"); !ok || age < 0 || age > 30 {
		t.Errorf("usersync.sessions.age = %v, %v; want the seconds since the last read", age, ok)
	}
	if n := rec.Sum(t, "usersync.sessions.reads", attribute.String("result", "ok")); n < 1 {
		t.Errorf("%d successful reads counted, want at least New's", n)
	}
	store.down.Store(true)
	eventually(t, "no failed read was counted", func() bool {
		return rec.Sum(t, "usersync.sessions.reads", attribute.String("result", "error")) > 0
	})
}

func TestClosedSetGoesStale(t *testing.T) {
	set := newSet(t, memstore.New(), func(c *sessions.Config) { c.MaxStale = 50 * time.Millisecond })
	if err := set.End(bg, sessions.Ending{Issuer: issuer, SessionID: "sess_1"}); err != nil {
		t.Fatal(err)
	}
	set.Close()
	// It reads no more, so it can no longer tell: it refuses every
	// identity with 503, not with what it read last.
	eventually(t, "a closed set never went stale", func() bool {
		err := set.CheckSession(identity("u", "sess_2"))
		return err != nil && !errors.Is(err, usersync.ErrSessionEnded)
	})
}

func TestNeverStaleWithANegativeMaxStale(t *testing.T) {
	store := &gated{Store: memstore.New()}
	set := newSet(t, store, func(c *sessions.Config) { c.MaxStale = -1 })
	store.down.Store(true)
	eventually(t, "no read failed", func() bool { return store.reads.Load() > 3 })
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	if err := set.CheckSession(identity("u", "sess_2")); err != nil {
		t.Fatalf("a set that is never stale refused: %v", err)
	}
}

// slowStore answers every read of endings after a delay.
type slowStore struct {
	sessions.Store
	delay time.Duration
}

func (s *slowStore) EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) ([]sessions.Ending, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.EndedSessions(ctx, at, seq, limit)
}

// endMany records n endings of sessions prefix0, prefix1, ... in the
// store, as other replicas would.
func endMany(t *testing.T, store sessions.Store, prefix string, n int) {
	t.Helper()
	var es []sessions.Ending
	for i := range n {
		es = append(es, sessions.Ending{Issuer: issuer, SessionID: fmt.Sprintf("%s%d", prefix, i), EndedAt: time.Now()})
	}
	if err := store.EndSessions(bg, es...); err != nil {
		t.Fatal(err)
	}
}

// TestManyPagesCatchUp holds that a Set reads every page: at start, and
// after a burst longer to read than MaxStale (each page is read within
// it, and kept as it comes).
func TestManyPagesCatchUp(t *testing.T) {
	mem := memstore.New()
	endMany(t, mem, "sess_before_", 2500)
	store := &slowStore{Store: mem, delay: 30 * time.Millisecond}
	set := newSet(t, store, func(c *sessions.Config) { c.MaxStale = 60 * time.Millisecond; c.StartupWait = time.Minute })
	if set.Len() != 2500 || !ended(t, set, identity("u", "sess_before_2499")) {
		t.Fatalf("after New over 3 pages: holds %d endings, want 2500", set.Len())
	}
	// A burst of 5 pages, each within MaxStale, all of them past it.
	endMany(t, mem, "sess_burst_", 5000)
	eventually(t, "the burst of 5 pages was never read whole", func() bool {
		return set.Len() == 7500 && set.CheckSession(identity("u", "sess_burst_4999")) != nil
	})
	eventually(t, "the set never became fresh again after the burst", func() bool {
		return set.CheckSession(identity("u", "sess_live")) == nil
	})
}

func TestEndCopiesItsInput(t *testing.T) {
	set := newSet(t, memstore.New(), nil)
	in := []sessions.Ending{{Issuer: issuer + "/", SessionID: "sess_1"}}
	if err := set.End(bg, in...); err != nil {
		t.Fatal(err)
	}
	if in[0].Issuer != issuer+"/" || !in[0].EndedAt.IsZero() {
		t.Fatalf("End changed its argument: %+v", in[0])
	}
	if !ended(t, set, identity("u", "sess_1")) {
		t.Fatal("an ending whose issuer has a trailing slash does not end the session of its tokens' iss")
	}
}
