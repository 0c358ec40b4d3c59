package sessions

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/usersync/usersync/internal/clock"
)

// How a Set reads the store: every Poll, the endings recorded after the
// last one it read, page by page, each page kept as it comes, so that a
// read cut short resumes where it stopped. Apart from that, every
// windowEvery, those recorded since window before the latest it read, as
// a transaction that took its position earlier may commit after one that
// took a later one (within window, as a store's transactions are short:
// Store.EndedSessions); and every fullEvery, all of them, in case a clock
// stepped back or a commit took longer.
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
	at  time.Time // the position of the last ending read: its RecordedAt
	seq int64     // and its Seq
}

// after reports whether the position (at, seq) is after r's.
func (r *reads) after(at time.Time, seq int64) bool {
	return at.After(r.at) || at.Equal(r.at) && seq > r.seq
}

// run reads the new endings every Poll until ctx ends.
func (s *Set) run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.readNew(ctx)
	}
}

// sweep reads the window again every windowEvery, and all the endings
// every fullEvery, until ctx ends.
func (s *Set) sweep(ctx context.Context) {
	t := time.NewTicker(windowEvery)
	defer t.Stop()
	full := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var from time.Time // all of them
		if time.Since(full) < fullEvery {
			s.mu.Lock()
			from = s.reads.at.Add(-window)
			s.mu.Unlock()
		}
		if s.readFrom(ctx, from, 0) == nil && from.IsZero() {
			full = time.Now()
		}
	}
}

// readNew reads the endings recorded after the last one read, and makes
// the Set fresh until MaxStale after it started once it has read them
// all.
func (s *Set) readNew(ctx context.Context) error {
	start := time.Now() // monotonic: MaxStale is measured on it
	s.mu.Lock()
	r := s.reads
	s.mu.Unlock()
	if err := s.readFrom(ctx, r.at, r.seq); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.freshen(start)
	return nil
}

// readFrom reads the endings after the position (at, seq), page by page,
// each page added, and the position of the new endings moved past it, as
// it comes. Each page has MaxStale to come: a page that hangs fails.
func (s *Set) readFrom(ctx context.Context, at time.Time, seq int64) error {
	for {
		page, err := s.page(ctx, at, seq)
		if err != nil {
			if ctx.Err() == nil {
				s.failed(ctx, err)
			}
			return err
		}
		if len(page) > 0 {
			last := page[len(page)-1]
			if asked := (reads{at, seq}); !asked.after(last.RecordedAt, last.Seq) {
				err := fmt.Errorf("sessions: the store's EndedSessions returned endings at or before the position asked")
				s.failed(ctx, err)
				return err
			}
			at, seq = last.RecordedAt, last.Seq
		}
		s.mu.Lock()
		s.add(page, s.cfg.Now())
		if s.reads.after(at, seq) {
			s.reads.at, s.reads.seq = at, seq
		}
		recovered := s.failing
		s.failing = false
		s.mu.Unlock()
		if recovered {
			s.log.InfoContext(ctx, "sessions: reading the ended sessions works again")
		}
		if len(page) < pageSize {
			return nil
		}
	}
}

// page reads one page of endings after (at, seq), within MaxStale.
func (s *Set) page(ctx context.Context, at time.Time, seq int64) ([]Ending, error) {
	if s.cfg.MaxStale > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.MaxStale)
		defer cancel()
	}
	page, err := s.cfg.Store.EndedSessions(ctx, at, seq, pageSize)
	s.tel.read(err)
	return page, err
}

// freshen marks the Set fresh until MaxStale after start, the start of a
// read of every new ending. s.mu is held.
func (s *Set) freshen(start time.Time) {
	if s.cfg.MaxStale < 0 {
		s.fresh.Store(true) // never stale
		return
	}
	if until := start.Add(s.cfg.MaxStale); until.After(s.freshUntil) {
		s.freshUntil = until
		if left := time.Until(until); left > 0 {
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
	if left := time.Until(s.freshUntil); left > 0 {
		s.stale.Reset(left) // made fresh meanwhile
		return
	}
	s.fresh.Store(false)
}

// failed logs the first of a run of failed reads.
func (s *Set) failed(ctx context.Context, err error) {
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
	next := rand.N(interval)
	for {
		if clock.Sleep(ctx, next) != nil {
			return
		}
		next = interval/2 + rand.N(interval)
		pctx, cancel := context.WithTimeout(ctx, interval)
		_, err := s.cfg.Store.PruneEndedSessions(pctx, s.cfg.Now().Add(-s.cfg.Keep))
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "sessions: pruning the ended sessions failed", "error", err)
		}
	}
}
