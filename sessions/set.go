package sessions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/clock"
	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/telemetry"
)

// Config configures a Set. Only Store is required; every other field has
// the default its comment gives.
type Config struct {
	// Store keeps the endings of every replica: the app's usersync store
	// (memstore's and sqlstore's implement Store), so that deleting a
	// user ends their sessions.
	Store Store
	// Keep is how long an ending is kept after its session ended: at
	// least the longest lifetime of a token of the issuers (Clerk's
	// session tokens: 60 s) plus the verifier's leeway, as a token of the
	// session minted just before it ended may be used until then; a token
	// that lives longer passes again once its session's ending is gone.
	// The Set keeps an ending in memory that long (and up to a minute
	// more), and prunes older ones from the store. Replicas that share a
	// store should share it too: the shortest one prunes. Default 1 hour.
	Keep time.Duration
	// Poll is how often the store is read for the endings other replicas
	// recorded: one reaches this replica within Poll and the time of a
	// read, or, if its transaction committed after a later one's, within a
	// second. Default 100 ms.
	Poll time.Duration
	// MaxStale is how long the Set trusts what it read: when it has not
	// read the store for that long (the store is down, a read hangs, or
	// the Set was closed), it refuses every identity with an error whose
	// HTTPStatus is 503 until it has read it again, so that no ending goes
	// unseen for longer. It must be above Poll. Negative: never stale, for
	// a single process that records every ending itself (SQLite). Default
	// 1 s.
	MaxStale time.Duration
	// StartupWait is the longest New waits for the first read of every
	// ending kept. Until it has succeeded the Set refuses every identity
	// as MaxStale does; it is retried in the background. Default 5 s.
	StartupWait time.Duration
	// Logger logs the reads of the store that fail, and the first that
	// succeeds after them. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of Keep (MaxStale is measured on the monotonic
	// clock). Default time.Now.
	Now func() time.Time
	// MeterProvider receives the Set's metrics: usersync_sessions_reads_total
	// by result (ok, error), usersync_sessions_held (the endings it holds)
	// and usersync_sessions_age_seconds (since its last successful read
	// started). Default: the global provider of go.opentelemetry.io/otel.
	MeterProvider metric.MeterProvider
}

// Set is a replica's view of the ended sessions: it implements
// usersync.SessionChecker for usersync.Config.Sessions and
// jwtverify.Config.Sessions, and records endings for every replica. It is
// safe for concurrent use; Close stops its reads.
type Set struct {
	cfg   Config
	log   *slog.Logger
	tel   *setTelemetry
	ended atomic.Pointer[snapshot] // read without a lock by CheckSession
	fresh atomic.Bool              // the snapshot is no older than MaxStale
	stale *time.Timer              // clears fresh MaxStale after the last read

	mu         sync.Mutex // serialises writers of ended, and guards what follows
	reads      reads      // where the reads of the new endings are
	freshUntil time.Time  // MaxStale after the last complete read of the new endings started (monotonic)
	failing    bool       // the last read failed (logged once)
	swept      time.Time  // when the endings no longer kept were last dropped

	cancel  context.CancelFunc
	running sync.WaitGroup
}

// errEnded is the error of an ended session's identity.
var errEnded error = &endedError{}

type endedError struct{}

func (*endedError) Error() string       { return usersync.ErrSessionEnded.Error() }
func (*endedError) Unwrap() error       { return usersync.ErrSessionEnded }
func (*endedError) Description() string { return "session ended" }

// errUnknown is the error of any identity while the Set cannot tell.
var errUnknown error = &unknownError{}

type unknownError struct{}

func (*unknownError) Error() string {
	return "sessions: the ended sessions could not be read from the store lately"
}

// HTTPStatus is 503: not the token's fault; try again shortly.
func (*unknownError) HTTPStatus() int { return http.StatusServiceUnavailable }

// New returns the Set of cfg, once it has read every ending kept from
// the store or StartupWait has passed (a failure is logged, not fatal: the
// Set refuses every identity until a read succeeds). It reads the store
// every Poll, and prunes it about every minute, until ctx ends or Close is
// called. A nil Store, or a MaxStale not above Poll, is an error wrapping
// usersync.ErrInvalid.
func New(ctx context.Context, cfg Config) (*Set, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: sessions.Config needs a Store", usersync.ErrInvalid)
	}
	config.Default(&cfg.Keep, time.Hour)
	config.Default(&cfg.Poll, 100*time.Millisecond)
	config.Default(&cfg.MaxStale, time.Second)
	config.Default(&cfg.StartupWait, 5*time.Second)
	if cfg.MaxStale > 0 && cfg.MaxStale <= cfg.Poll {
		return nil, fmt.Errorf("%w: sessions.Config.MaxStale (%v) must be above Poll (%v)", usersync.ErrInvalid, cfg.MaxStale, cfg.Poll)
	}
	if cfg.Keep < 0 || cfg.Poll < 0 {
		return nil, fmt.Errorf("%w: sessions.Config.Keep and Poll cannot be negative", usersync.ErrInvalid)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Set{cfg: cfg, log: telemetry.Logger(cfg.Logger)}
	s.tel = newSetTelemetry(cfg.MeterProvider, s)
	s.ended.Store(&snapshot{})
	s.stale = time.AfterFunc(time.Hour, s.expire)
	s.stale.Stop()
	ctx, s.cancel = context.WithCancel(ctx)

	// The first read is of every ending, from the zero position; if it
	// took longer than MaxStale, the next (of those recorded since) makes
	// the Set fresh.
	startup, cancel := context.WithTimeout(ctx, cfg.StartupWait)
	defer cancel()
	for s.readNew(startup) != nil || !s.fresh.Load() {
		if clock.Sleep(startup, cfg.Poll) != nil {
			break
		}
	}
	prune := pruneInterval
	s.running.Go(func() { s.run(ctx) })
	s.running.Go(func() { s.sweep(ctx) })
	s.running.Go(func() { s.pruneEvery(ctx, prune) })
	return s, nil
}

// Close stops the Set's reads of the store (as the end of New's ctx
// does), and waits for them. Its checks go on with what it read last
// until it is stale: then they refuse every identity, as the Set can no
// longer tell.
func (s *Set) Close() error {
	s.cancel()
	s.running.Wait()
	return nil
}

// CheckSession implements usersync.SessionChecker: it returns an error
// wrapping usersync.ErrSessionEnded (with the Description "session ended")
// for an identity whose session, or every session of whose user, has
// ended, an error whose HTTPStatus is 503 while the Set is stale, and nil
// otherwise. It reads memory only, and allocates nothing.
func (s *Set) CheckSession(id *usersync.Identity) error {
	if !s.fresh.Load() {
		return errUnknown
	}
	e := s.ended.Load()
	if id.SessionID != "" && has(e.sessions, e.recentSessions, id.Issuer, id.SessionID) ||
		(len(e.users) > 0 || len(e.recentUsers) > 0) && has(e.users, e.recentUsers, id.Issuer, id.Subject) {
		return errEnded
	}
	return nil
}

// End records endings in the store, for every replica, and in the Set at
// once. An ending without an EndedAt (or with one in the future) ended
// now; an Issuer's trailing "/" is dropped, as it is from tokens' iss. It
// fails with an error wrapping usersync.ErrInvalid for an ending the store
// would refuse, or the store's error; either way the Set holds none of
// them. endings is not changed.
func (s *Set) End(ctx context.Context, endings ...Ending) error {
	now := s.cfg.Now()
	endings = append([]Ending(nil), endings...)
	for i := range endings {
		e := &endings[i]
		e.Issuer = strings.TrimRight(e.Issuer, "/") // as tokens' iss is read
		if e.EndedAt.IsZero() || e.EndedAt.After(now) {
			e.EndedAt = now // an ending from the future would be kept longer than it needs
		}
		e.EndedAt = e.EndedAt.Truncate(time.Millisecond)
		if err := e.Validate(); err != nil {
			return err
		}
	}
	if err := s.cfg.Store.EndSessions(ctx, endings...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.add(endings, now)
	return nil
}

// Len returns how many endings the Set holds: sessions, and users all of
// whose sessions ended.
func (s *Set) Len() int { return s.ended.Load().len() }

// add publishes a snapshot with the endings that are still kept at now,
// and, at most once a minute, without those that no longer are. s.mu is
// held.
func (s *Set) add(endings []Ending, now time.Time) {
	e := s.ended.Load()
	next := e.with(endings, s.cfg.Keep, now)
	if now.Sub(s.swept) >= time.Minute {
		s.swept = now
		next = next.merged(now)
	}
	if next != e {
		s.ended.Store(next)
	}
}
