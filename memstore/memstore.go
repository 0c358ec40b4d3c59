// Package memstore is an in-memory usersync.Store, with a change feed and
// leases (feed.Store, lease.Store): for tests, examples and single-process
// apps that need no persistence.
//
// Lookups by ID and by token identifier are O(1) map reads under a read
// lock; List keeps IDs sorted for keyset pagination. Returned users are
// copies, so callers cannot change stored state.
//
// memstore has no transactions, so it has no counterpart of sqlstore's
// OnWrite hook: an app that keeps rows of its own beside memstore reacts to
// changes through usersync.Config.OnChange (in process, after the write)
// or the change feed (package feed: at least once, after the write).
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sessions"
)

// Store is a concurrency-safe in-memory usersync.Store, feed.Store and
// lease.Store. The zero value is not ready for use; call New.
type Store struct {
	mu       sync.RWMutex
	byToken  map[string]*record
	byID     map[string]*record
	ids      []string // every ID, tombstones included, sorted
	live     int
	leases   map[string]*lease
	changes  []usersync.Change // the feed, by Seq; pruned from the front
	lastSeq  int64
	org      orgData
	sessions sessionData
}

// lease is a held (or released) lease.
type lease struct {
	holder  string
	expires time.Time
	cursor  int64
}

// record is a stored user with the version each Profile field was last
// written at.
type record struct {
	user     usersync.User
	versions [maxFields]usersync.Version // by field bit
	// verified is the stored email_verified, and verifiedFor the email of
	// the write that stored it (nil: a write without one): user's
	// EmailVerified holds while its Email is that address.
	verified    bool
	verifiedFor *string
}

// setVerified keeps the email_verified of w, which carries it, with the
// address it came with.
func (r *record) setVerified(w *usersync.Write) {
	r.verified, r.verifiedFor = w.Profile.EmailVerified, nil
	if w.Fields&usersync.FieldEmail != 0 {
		email := w.Profile.Email
		r.verifiedFor = &email
	}
}

// resolveVerified sets the user's EmailVerified: the stored flag, while
// the stored email is the address it came with.
func (r *record) resolveVerified() {
	r.user.EmailVerified = r.verified && (r.verifiedFor == nil || *r.verifiedFor == r.user.Email)
}

// maxFields is how many Profile fields a record has room for; the build
// fails here if AllFields ever has more.
const maxFields = 12

var _ [0]struct{} = [usersync.AllFields >> maxFields]struct{}{}

// fieldCount is the number of Profile fields: AllFields has one bit per
// field, from the lowest up.
var fieldCount = bits.Len(uint(usersync.AllFields))

var _ usersync.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{byToken: make(map[string]*record), byID: make(map[string]*record), leases: make(map[string]*lease), org: newOrgData()}
}

// Get implements usersync.Store.
func (s *Store) Get(ctx context.Context, id string) (usersync.User, error) {
	if err := ctx.Err(); err != nil {
		return usersync.User{}, err
	}
	s.mu.RLock()
	u, err := live(s.byID[id])
	s.mu.RUnlock()
	return u, err
}

// GetByTokenIdentifier implements usersync.Store.
func (s *Store) GetByTokenIdentifier(ctx context.Context, tokenIdentifier string) (usersync.User, error) {
	if err := ctx.Err(); err != nil {
		return usersync.User{}, err
	}
	s.mu.RLock()
	u, err := live(s.byToken[tokenIdentifier])
	s.mu.RUnlock()
	return u, err
}

// live returns a copy of r's user if it is live. The caller holds a lock.
func live(r *record) (usersync.User, error) {
	switch {
	case r == nil:
		return usersync.User{}, usersync.ErrNotFound
	case !r.user.DeletedAt.IsZero():
		return usersync.User{}, usersync.ErrDeleted
	}
	return clone(r.user), nil
}

// clone returns a copy of u that shares no memory with it.
func clone(u usersync.User) usersync.User {
	u.Metadata = slices.Clone(u.Metadata)
	return u
}

// GetByExternalID implements usersync.Store. It scans every user: fine for
// the tests and small apps memstore is for.
func (s *Store) GetByExternalID(ctx context.Context, issuer, externalID string) (usersync.User, error) {
	if err := ctx.Err(); err != nil {
		return usersync.User{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found *record
	for _, r := range s.byID {
		u := &r.user
		if externalID == "" || u.ExternalID != externalID || u.Issuer != issuer {
			continue
		}
		if found == nil || before(u, &found.user) {
			found = r
		}
	}
	return live(found)
}

// before reports whether GetByExternalID prefers u to v: a live user to a
// tombstone, then the more recently updated, then the lower ID.
func before(u, v *usersync.User) bool {
	if ul, vl := u.DeletedAt.IsZero(), v.DeletedAt.IsZero(); ul != vl {
		return ul
	}
	return u.UpdatedAt.After(v.UpdatedAt) || u.UpdatedAt.Equal(v.UpdatedAt) && u.ID < v.ID
}

// GetMany implements usersync.Store.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]usersync.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := make(map[string]usersync.User, len(ids))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, id := range ids {
		if r := s.byID[id]; r != nil && r.user.DeletedAt.IsZero() {
			m[id] = clone(r.user)
		}
	}
	return m, nil
}

// Upsert implements usersync.Store.
func (s *Store) Upsert(ctx context.Context, w usersync.Write) (usersync.User, usersync.Outcome, error) {
	if err := w.Validate(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	if err := ctx.Err(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(&w); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	return s.upsert(&w)
}

// UpsertBatch implements usersync.Store, under one lock.
func (s *Store) UpsertBatch(ctx context.Context, ws []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	for i := range ws {
		if err := ws[i].Validate(); err != nil {
			return nil, nil, fmt.Errorf("write %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Every write is checked first, so that the batch fails whole.
	fresh := map[string]bool{}    // token identifiers this batch creates
	freshIDs := map[string]bool{} // and their IDs
	for i := range ws {
		w := &ws[i]
		if s.byToken[w.TokenIdentifier] != nil || fresh[w.TokenIdentifier] {
			continue
		}
		if s.byID[w.ID] != nil || freshIDs[w.ID] {
			return nil, nil, fmt.Errorf("write %d: %w: ID %q is taken", i, usersync.ErrInvalid, w.ID)
		}
		fresh[w.TokenIdentifier], freshIDs[w.ID] = true, true
	}
	users := make([]usersync.User, len(ws))
	outcomes := make([]usersync.Outcome, len(ws))
	for i := range ws {
		u, o, err := s.upsert(&ws[i])
		if err == nil && o != usersync.Stale {
			users[i] = u
		}
		outcomes[i] = o
	}
	return users, outcomes, nil
}

// check fails if w would create a user with another user's ID. The caller
// holds the write lock.
func (s *Store) check(w *usersync.Write) error {
	if s.byToken[w.TokenIdentifier] == nil && s.byID[w.ID] != nil {
		return fmt.Errorf("%w: ID %q is taken", usersync.ErrInvalid, w.ID)
	}
	return nil
}

// upsert applies a checked write. The caller holds the write lock.
func (s *Store) upsert(w *usersync.Write) (usersync.User, usersync.Outcome, error) {
	r := s.byToken[w.TokenIdentifier]
	if r == nil {
		r = &record{user: usersync.User{
			ID:              w.ID,
			TokenIdentifier: w.TokenIdentifier,
			Issuer:          w.Issuer,
			Subject:         w.Subject,
			Profile:         w.Profile,
			CreatedAt:       w.At,
			UpdatedAt:       w.At,
		}}
		r.user.Metadata = slices.Clone(w.Profile.Metadata)
		for i := range fieldCount {
			if w.Fields&(1<<i) != 0 {
				r.versions[i] = w.Version
				r.user.Version = w.Version
			}
		}
		r.setVerified(w)
		r.resolveVerified()
		s.insert(r)
		s.changed(usersync.Created, &r.user)
		return clone(r.user), usersync.Created, nil
	}
	if !r.user.DeletedAt.IsZero() {
		return usersync.User{}, usersync.Stale, fmt.Errorf("%w: %q", usersync.ErrDeleted, w.TokenIdentifier)
	}
	var newer usersync.Fields
	for i := range fieldCount {
		if w.Fields&(1<<i) != 0 && w.Version > r.versions[i] {
			newer |= 1 << i
			r.versions[i] = w.Version
		}
	}
	if newer == 0 {
		return clone(r.user), usersync.Stale, nil
	}
	r.user.Profile.CopyFields(&w.Profile, newer)
	if newer&usersync.FieldMetadata != 0 {
		r.user.Metadata = slices.Clone(w.Profile.Metadata)
	}
	if newer&usersync.FieldEmailVerified != 0 {
		r.setVerified(w)
	}
	r.resolveVerified()
	r.user.Version = max(r.user.Version, w.Version)
	r.user.UpdatedAt = w.At
	s.changed(usersync.Updated, &r.user)
	return clone(r.user), usersync.Updated, nil
}

// changed appends a change to the feed. The caller holds the write lock.
func (s *Store) changed(o usersync.Outcome, u *usersync.User) {
	s.lastSeq++
	s.changes = append(s.changes, usersync.Change{Seq: s.lastSeq, Outcome: o, UserID: u.ID, At: u.UpdatedAt})
}

// Delete implements usersync.Store.
func (s *Store) Delete(ctx context.Context, t usersync.Write) (usersync.User, usersync.Outcome, error) {
	if err := t.Validate(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	if err := ctx.Err(); err != nil {
		return usersync.User{}, usersync.Stale, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.byToken[t.TokenIdentifier]
	switch {
	case r == nil:
		if s.byID[t.ID] != nil {
			return usersync.User{}, usersync.Stale, fmt.Errorf("%w: ID %q is taken", usersync.ErrInvalid, t.ID)
		}
		r = &record{user: usersync.User{
			ID:              t.ID,
			TokenIdentifier: t.TokenIdentifier,
			Issuer:          t.Issuer,
			Subject:         t.Subject,
			CreatedAt:       t.At,
		}}
		s.insert(r)
	case !r.user.DeletedAt.IsZero():
		return clone(r.user), usersync.Stale, nil
	}
	r.user.Profile = usersync.Profile{ExternalID: r.user.ExternalID} // the app's key stays
	r.verified, r.verifiedFor = false, nil
	r.user.UpdatedAt, r.user.DeletedAt = t.At, t.At
	if e := (sessions.Ending{Issuer: r.user.Issuer, Subject: r.user.Subject, EndedAt: t.At}); e.Validate() == nil {
		s.endSession(e)
	}
	s.live--
	s.changed(usersync.Deleted, &r.user)
	s.endMemberships(r.user.TokenIdentifier, milli(t.At))
	return r.user, usersync.Deleted, nil
}

// insert adds a new record to the indexes. The caller holds the write lock.
func (s *Store) insert(r *record) {
	s.byToken[r.user.TokenIdentifier] = r
	s.byID[r.user.ID] = r
	s.live++
	// IDs from the default generator grow, so this is almost always an
	// append.
	if n := len(s.ids); n == 0 || s.ids[n-1] < r.user.ID {
		s.ids = append(s.ids, r.user.ID)
		return
	}
	i, _ := slices.BinarySearch(s.ids, r.user.ID)
	s.ids = slices.Insert(s.ids, i, r.user.ID)
}

// List implements usersync.Store.
func (s *Store) List(ctx context.Context, after string, limit int) ([]usersync.User, error) {
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d", usersync.ErrInvalid, limit)
	}
	if !utf8.ValidString(after) || strings.IndexByte(after, 0) >= 0 {
		return nil, fmt.Errorf("%w: after is not an ID", usersync.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := sort.SearchStrings(s.ids, after)
	if i < len(s.ids) && s.ids[i] == after {
		i++
	}
	var out []usersync.User
	for ; i < len(s.ids) && len(out) < limit; i++ {
		if r := s.byID[s.ids[i]]; r.user.DeletedAt.IsZero() {
			out = append(out, clone(r.user))
		}
	}
	return out, nil
}

// Count implements usersync.Store.
func (s *Store) Count(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.live, nil
}

// checkLease checks the name and holder of a lease, as every store does.
func checkLease(name, holder string) error {
	for _, v := range []string{name, holder} {
		if v == "" || len(v) > 255 || !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%w: a lease name and holder are 1 to 255 bytes of UTF-8 without NUL", usersync.ErrInvalid)
		}
	}
	return nil
}

// AcquireLease implements lease.Store.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	if err := checkLease(name, holder); err != nil {
		return 0, false, err
	}
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[name]
	if l == nil {
		l = &lease{}
		s.leases[name] = l
	}
	if l.holder != holder && now.Before(l.expires) {
		return l.cursor, false, nil
	}
	l.holder, l.expires = holder, now.Add(ttl)
	return l.cursor, true, nil
}

// RenewLease implements lease.Store.
func (s *Store) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error) {
	if err := checkLease(name, holder); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[name]
	if l == nil || l.holder != holder {
		return false, nil
	}
	l.expires, l.cursor = time.Now().Add(ttl), cursor
	return true, nil
}

// ReleaseLease implements lease.Store.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := checkLease(name, holder); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.leases[name]; l != nil && l.holder == holder {
		l.expires = time.Time{}
	}
	return nil
}

// LeaseCursors implements lease.Store.
func (s *Store) LeaseCursors(ctx context.Context, prefix string) (map[string]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]int64{}
	for name, l := range s.leases {
		if strings.HasPrefix(name, prefix) {
			out[name] = l.cursor
		}
	}
	return out, nil
}

// Changes implements feed.Store.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]usersync.Change, error) {
	if limit < 1 {
		return nil, fmt.Errorf("%w: a limit below 1", usersync.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, _ := slices.BinarySearchFunc(s.changes, after+1, func(c usersync.Change, seq int64) int { return cmp.Compare(c.Seq, seq) })
	out := slices.Clone(s.changes[i:min(i+limit, len(s.changes))])
	for k := range out {
		// The user's external ID as the feed is read, as sqlstore's feed
		// has it: a tombstone's never changes.
		if r := s.byID[out[k].UserID]; r != nil {
			out[k].ExternalID = r.user.ExternalID
		}
	}
	return out, nil
}

// PruneChanges implements feed.Store.
func (s *Store) PruneChanges(ctx context.Context, through int64, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.changes[:0]
	for _, c := range s.changes {
		if c.Seq > through || !c.At.Before(before) {
			kept = append(kept, c)
		}
	}
	n := len(s.changes) - len(kept)
	clear(s.changes[len(kept):])
	s.changes = kept
	return n, nil
}
