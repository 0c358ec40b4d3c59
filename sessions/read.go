package sessions

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// How a Set reads the store: every Poll, the endings recorded after the
// last one it read; every windowEvery, those recorded since window before
// the latest it read, as a transaction that took its position earlier may
// commit after one that took a later one (within window, as a store's
// transactions are short: Store.EndedSessions); and every fullEvery, all
// of them, in case a clock stepped back or a commit took longer.
const (
	window      = 10 * time.Second
	windowEvery = time.Second
	fullEvery   = time.Minute
	pageSize    = 1000 // endings per read of the store
)

// pruneInterval is about how often each Set prunes the store (a variable
// for the tests).
var pruneInterval = time.Minute

// reads is where a Set's reads of the store are.
type reads struct {
	at       time.Time // the position of the last ending read: its RecordedAt
	seq      int64     // and its Seq
	windowAt time.Time // when the window was last read
	fullAt   time.Time // when every ending was last read; zero: never
}

// after reports whether the position (at, seq) is after r's.
func (r *reads) after(at time.Time, seq int64) bool {
	return at.After(r.at) || at.Equal(r.at) && seq > r.seq
}

// run reads the store every Poll until ctx ends.
func (s *Set) run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.read(ctx); err != nil && ctx.Err() != nil {
			return
		}
	}
}

// read reads the endings the store holds past a position (see the
// constants above), and adds those still kept. A read that succeeds
// makes the Set fresh until MaxStale after it started.
func (s *Set) read(ctx context.Context) error {
	start := s.cfg.Now()
	s.mu.Lock()
	r := s.reads
	s.mu.Unlock()
	var at time.Time
	var seq int64
	full, windowed := r.fullAt.IsZero() || start.Sub(r.fullAt) >= fullEvery, start.Sub(r.windowAt) >= windowEvery
	switch {
	case full:
	case windowed:
		at = r.at.Add(-window)
	default:
		at, seq = r.at, r.seq
	}
	if s.cfg.MaxStale > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.MaxStale) // a read that hangs fails
		defer cancel()
	}
	var got []Ending
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
	if s.reads.after(at, seq) {
		s.reads.at, s.reads.seq = at, seq
	}
	if full {
		s.reads.fullAt = start
	}
	if full || windowed {
		s.reads.windowAt = start
	}
	s.add(got, start)
	s.freshen(start)
	if s.failing {
		s.failing = false
		s.log.InfoContext(ctx, "sessions: reading the ended sessions works again")
	}
	return nil
}

// freshen marks the Set fresh until MaxStale after start, the start of a
// successful read. s.mu is held.
func (s *Set) freshen(start time.Time) {
	if s.cfg.MaxStale < 0 {
		s.fresh.Store(true) // never stale
		return
	}
	if until := start.Add(s.cfg.MaxStale); until.After(s.freshUntil) {
		s.freshUntil = until
		if left := until.Sub(s.cfg.Now()); left > 0 {
			s.stale.Reset(left)
			s.fresh.Store(true)
		}
	}
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
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return // closing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failing {
		s.failing = true
		s.log.ErrorContext(ctx, "sessions: reading the ended sessions failed; the set refuses every identity once it is stale", "error", err, "max_stale", s.cfg.MaxStale)
	}
}

// pruneEvery deletes from the store the endings no longer kept, about
// every interval (at a random offset, so that replicas started together do
// not prune together), until ctx ends. A prune runs apart from the reads,
// so that a slow one does not make the Set stale.
func (s *Set) pruneEvery(ctx context.Context, interval time.Duration) {
	wait := rand.N(interval)
	for {
		if sleep(ctx, wait) != nil {
			return
		}
		wait = interval/2 + rand.N(interval)
		pctx, cancel := context.WithTimeout(ctx, interval)
		_, err := s.cfg.Store.PruneEndedSessions(pctx, s.cfg.Now().Add(-s.cfg.Keep))
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "sessions: pruning the ended sessions failed", "error", err)
		}
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
