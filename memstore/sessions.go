package memstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sessions"
)

var _ sessions.Store = (*Store)(nil)

// sessionData is the store's ended sessions (sessions.Store): in the
// order they were recorded, and by key.
type sessionData struct {
	endings []sessions.Ending // by Seq
	byKey   map[endingKey]bool
	lastSeq int64
	last    time.Time // the latest RecordedAt
}

// endingKey is what makes an ending the same as another: the session, or,
// without one, the user.
type endingKey struct{ issuer, session, subject string }

func keyOf(e *sessions.Ending) endingKey {
	if e.SessionID != "" {
		return endingKey{e.Issuer, e.SessionID, ""}
	}
	return endingKey{e.Issuer, "", e.Subject}
}

// EndSessions implements sessions.Store.
func (s *Store) EndSessions(ctx context.Context, endings ...sessions.Ending) error {
	for i := range endings {
		if err := endings[i].Validate(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range endings {
		s.endSession(e)
	}
	return nil
}

// endSession records e unless an ending of its key is recorded. The
// caller holds the write lock.
func (s *Store) endSession(e sessions.Ending) {
	d := &s.sessions
	k := keyOf(&e)
	if d.byKey[k] {
		return
	}
	if d.byKey == nil {
		d.byKey = make(map[endingKey]bool)
	}
	d.byKey[k] = true
	now := time.Now().Truncate(time.Millisecond)
	if now.Before(d.last) {
		now = d.last // the clock stepped back: RecordedAt never does
	}
	d.lastSeq++
	e.EndedAt = e.EndedAt.Truncate(time.Millisecond)
	e.RecordedAt, e.Seq, d.last = now, d.lastSeq, now
	d.endings = append(d.endings, e)
}

// EndedSessions implements sessions.Store.
func (s *Store) EndedSessions(ctx context.Context, at time.Time, seq int64, limit int) ([]sessions.Ending, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit %d is not 1 to 1000", usersync.ErrInvalid, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := &s.sessions
	// Seq follows RecordedAt here: the first after the position is found
	// by its Seq alone.
	i, _ := slices.BinarySearchFunc(d.endings, at, func(e sessions.Ending, at time.Time) int {
		return e.RecordedAt.Compare(at)
	})
	for i < len(d.endings) && d.endings[i].RecordedAt.Equal(at) && d.endings[i].Seq <= seq {
		i++
	}
	return slices.Clone(d.endings[i:min(len(d.endings), i+limit)]), nil
}

// PruneEndedSessions implements sessions.Store.
func (s *Store) PruneEndedSessions(ctx context.Context, before time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &s.sessions
	kept := d.endings[:0]
	for _, e := range d.endings {
		if e.EndedAt.Before(before) {
			delete(d.byKey, keyOf(&e))
			continue
		}
		kept = append(kept, e)
	}
	n := int64(len(d.endings) - len(kept))
	clear(d.endings[len(kept):])
	d.endings = kept
	return n, nil
}
