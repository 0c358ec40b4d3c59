package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/usersync/usersync"
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
	// session minted just before it ended may be used until then. Set
	// keeps it in memory that long, and prunes older endings from the
	// store. Replicas that share a store should share it too: the
	// shortest one prunes. Default 1 hour.
	Keep time.Duration
	// Poll is how often the store is read for endings other replicas
	// recorded: how long one takes to reach this replica, at most (half
	// of it on average). Default 100 ms.
	Poll time.Duration
	// MaxStale is how long the Set trusts what it read: when it has not
	// read the store for that long (the store is down, or a read hangs),
	// it refuses every identity with an error whose HTTPStatus is 503
	// until it has read it again, so that no ending goes unseen for longer.
	// It must be above Poll. Default 1 s.
	MaxStale time.Duration
	// StartupWait is the longest New waits for the first read of every
	// ending kept. Until it has succeeded the Set refuses every identity
	// as MaxStale does; it is retried in the background. Default 5 s.
	StartupWait time.Duration
	// Logger logs the reads of the store that fail, and the first that
	// succeeds after them. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of Keep and MaxStale. Default time.Now.
	Now func() time.Time
	// MeterProvider receives the Set's metrics: usersync_sessions_reads_total
	// by result (ok, error), usersync_sessions_held (the endings it holds)
	// and usersync_sessions_age_seconds (since its last successful read
	// started). Default: the global provider of go.opentelemetry.io/otel.
	MeterProvider metric.MeterProvider
}

// window is how far before the latest RecordedAt it saw a Set reads the
// store again: an ending's transaction commits within it (a store's
// transactions are short), so that none is missed (Store.EndedSessions).
const window = 10 * time.Second

// pageSize is how many endings one read of the store returns.
const pageSize = 1000

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
	seen       time.Time  // the latest RecordedAt read
	freshUntil time.Time  // MaxStale after the last successful read started
	failing    bool       // the last read failed (logged once)
	nextPrune  time.Time

	cancel  context.CancelFunc
	running sync.WaitGroup
}

// snapshot is the set of endings a Set holds, never changed once
// published: a writer publishes a copy.
type snapshot struct {
	sessions endings   // session endings, by session ID
	users    endings   // user endings, by subject
	next     time.Time // the earliest until of them all (zero: none)
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

// has reports whether issuer ended id.
func (m endings) has(issuer, id string) bool {
	for _, k := range m[id] {
		if k.issuer == issuer {
			return true
		}
	}
	return false
}

// until returns until when issuer's ending of id is kept, if it is.
func (m endings) until(issuer, id string) (time.Time, bool) {
	for _, k := range m[id] {
		if k.issuer == issuer {
			return k.until, true
		}
	}
	return time.Time{}, false
}

// with returns m's kept list of id with issuer's ending kept until until.
func (m endings) with(issuer, id string, until time.Time) []kept {
	ks := []kept{{issuer, until}}
	for _, k := range m[id] {
		if k.issuer != issuer {
			ks = append(ks, k)
		}
	}
	return ks
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
// every Poll, and prunes it every minute, until ctx ends or Close is
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
	if cfg.MaxStale <= cfg.Poll {
		return nil, fmt.Errorf("%w: sessions.Config.MaxStale (%v) must be above Poll (%v)", usersync.ErrInvalid, cfg.MaxStale, cfg.Poll)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Set{cfg: cfg, log: telemetry.Logger(cfg.Logger)}
	s.tel = newSetTelemetry(cfg.MeterProvider, s)
	s.ended.Store(&snapshot{sessions: endings{}, users: endings{}})
	s.stale = time.AfterFunc(time.Hour, s.expire)
	s.stale.Stop()
	ctx, s.cancel = context.WithCancel(ctx)

	startup, cancel := context.WithTimeout(ctx, cfg.StartupWait)
	defer cancel()
	for s.read(startup) != nil {
		if sleep(startup, cfg.Poll) != nil {
			break
		}
	}
	s.running.Go(func() { s.run(ctx) })
	return s, nil
}

// Close stops the Set's reads of the store (as the end of New's ctx
// does), and waits for them. Its checks go on with what it read last, and
// no longer go stale: a server that shuts down finishes its requests.
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
	if id.SessionID != "" && e.sessions.has(id.Issuer, id.SessionID) || len(e.users) > 0 && e.users.has(id.Issuer, id.Subject) {
		return errEnded
	}
	return nil
}

// End records endings in the store, for every replica, and in the Set at
// once. An ending without an EndedAt (or with one in the future) ended
// now; an Issuer's trailing "/" is dropped, as it is from tokens' iss. It fails with an error
// wrapping usersync.ErrInvalid for an ending the store would refuse, or
// the store's error; either way the Set holds none of them.
func (s *Set) End(ctx context.Context, endings ...Ending) error {
	now := s.cfg.Now()
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
func (s *Set) Len() int {
	e := s.ended.Load()
	return len(e.sessions) + len(e.users)
}

// run reads the store every Poll and prunes it every minute until ctx
// ends.
func (s *Set) run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	defer s.stale.Stop() // no reads, no staleness: see Close
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.read(ctx); err != nil && ctx.Err() != nil {
			return
		}
		s.prune(ctx)
	}
}

// read reads the endings recorded since a window before the latest
// RecordedAt it had read (a transaction that committed since may hold an
// ending recorded then), all of them the first time, and adds those kept.
// It marks the Set fresh until MaxStale after the read started.
func (s *Set) read(ctx context.Context) error {
	start := s.cfg.Now()
	s.mu.Lock()
	var at time.Time
	if !s.seen.IsZero() {
		at = s.seen.Add(-window)
	}
	s.mu.Unlock()
	var got []Ending
	var seq int64
	for {
		page, err := s.cfg.Store.EndedSessions(ctx, at, seq, pageSize)
		s.tel.read(err)
		if err != nil {
			s.failed(ctx, err)
			return err
		}
		got = append(got, page...)
		if len(page) > 0 {
			at, seq = page[len(page)-1].RecordedAt, page[len(page)-1].Seq
		}
		if len(page) < pageSize {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.After(s.seen) {
		s.seen = at
	}
	s.add(got, start)
	if until := start.Add(s.cfg.MaxStale); until.After(s.freshUntil) {
		s.freshUntil = until
		if left := until.Sub(s.cfg.Now()); left > 0 {
			s.stale.Reset(left)
			s.fresh.Store(true)
		}
	}
	if s.failing {
		s.failing = false
		s.log.InfoContext(ctx, "sessions: reading the ended sessions works again")
	}
	return nil
}

// expire marks the Set stale if no read has made it fresh since the
// timer was set.
func (s *Set) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cfg.Now().Before(s.freshUntil) {
		s.fresh.Store(false)
	}
}

// failed logs the first of a run of failed reads.
func (s *Set) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failing {
		s.failing = true
		s.log.ErrorContext(ctx, "sessions: reading the ended sessions failed; the set refuses every identity once it is stale", "error", err, "max_stale", s.cfg.MaxStale)
	}
}

// add publishes a snapshot with the endings that are still kept at now,
// and without those that no longer are, if anything changes. s.mu is held.
func (s *Set) add(new []Ending, now time.Time) {
	old := s.ended.Load()
	var sessions, users endings
	if !old.next.IsZero() && !now.Before(old.next) {
		sessions, users = old.sessions.keptAt(now), old.users.keptAt(now)
	}
	for _, e := range new {
		until := e.EndedAt.Add(s.cfg.Keep)
		if !now.Before(until) {
			continue
		}
		m, have, id := &sessions, old.sessions, e.SessionID
		if id == "" {
			m, have, id = &users, old.users, e.Subject
		}
		if was, ok := have.until(e.Issuer, id); ok && !until.After(was) {
			continue
		}
		if *m == nil {
			*m = maps.Clone(have)
		}
		(*m)[id] = (*m).with(e.Issuer, id, until)
	}
	if sessions == nil && users == nil {
		return
	}
	next := &snapshot{sessions: old.sessions, users: old.users}
	if sessions != nil {
		next.sessions = sessions
	}
	if users != nil {
		next.users = users
	}
	for _, m := range []endings{next.sessions, next.users} {
		for _, ks := range m {
			for _, k := range ks {
				if next.next.IsZero() || k.until.Before(next.next) {
					next.next = k.until
				}
			}
		}
	}
	s.ended.Store(next)
}

// keptAt returns a copy of m without the endings no longer kept at now.
func (m endings) keptAt(now time.Time) endings {
	out := make(endings, len(m))
	for id, ks := range m {
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
	return out
}

// prune deletes from the store the endings no longer kept, once a minute.
func (s *Set) prune(ctx context.Context) {
	now := s.cfg.Now()
	s.mu.Lock()
	due := !now.Before(s.nextPrune)
	if due {
		s.nextPrune = now.Add(time.Minute)
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if _, err := s.cfg.Store.PruneEndedSessions(ctx, now.Add(-s.cfg.Keep)); err != nil && !errors.Is(err, context.Canceled) {
		s.log.WarnContext(ctx, "sessions: pruning the ended sessions failed", "error", err)
	}
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
