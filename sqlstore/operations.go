package sqlstore

import (
	"context"
	"time"

	"github.com/usersync/usersync"
)

// The methods of usersync.Store, each measured as one operation (see
// Config.MeterProvider): the work is in the lower-case methods.
// The operations, as their label values.
const (
	opGet                  = "get"
	opGetByExternalID      = "get_by_external_id"
	opGetByTokenIdentifier = "get_by_token_identifier"
	opGetMany              = "get_many"
	opList                 = "list"
	opCount                = "count"
	opUpsert               = "upsert"
	opDelete               = "delete"
	opUpsertBatch          = "upsert_batch"
	opChanges              = "changes"
	opPruneChanges         = "prune_changes"
	opLeaseCursors         = "lease_cursors"
	opAcquireLease         = "acquire_lease"
	opRenewLease           = "renew_lease"
	opReleaseLease         = "release_lease"
	opMigrate              = "migrate"
)

// Get implements usersync.Store.
func (s *Store) Get(ctx context.Context, id string) (u usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGet)
	defer op.finish(ctx, &err)
	return s.get(ctx, id)
}

// GetByExternalID implements usersync.Store.
func (s *Store) GetByExternalID(ctx context.Context, issuer, externalID string) (u usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGetByExternalID)
	defer op.finish(ctx, &err)
	return s.getByExternalID(ctx, issuer, externalID)
}

// GetByTokenIdentifier implements usersync.Store.
func (s *Store) GetByTokenIdentifier(ctx context.Context, tokenIdentifier string) (u usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGetByTokenIdentifier)
	defer op.finish(ctx, &err)
	return s.getByTokenIdentifier(ctx, tokenIdentifier)
}

// GetMany implements usersync.Store. Up to 1,000 distinct IDs cost one
// query; more are fetched in chunks of 1,000.
func (s *Store) GetMany(ctx context.Context, ids []string) (users map[string]usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opGetMany)
	defer op.finish(ctx, &err)
	return s.getMany(ctx, ids)
}

// List implements usersync.Store with keyset pagination on the primary key.
func (s *Store) List(ctx context.Context, after string, limit int) (users []usersync.User, err error) {
	ctx, op := s.tel.start(ctx, opList)
	defer op.finish(ctx, &err)
	return s.list(ctx, after, limit)
}

// Count implements usersync.Store.
func (s *Store) Count(ctx context.Context) (n int, err error) {
	ctx, op := s.tel.start(ctx, opCount)
	defer op.finish(ctx, &err)
	return s.count(ctx)
}

// Upsert implements usersync.Store in one statement. If the database
// refuses the write's metadata though Validate takes it (a value Validate
// cannot foresee: a database of another version, a CHECK or trigger of
// the app's), the write runs again without it: the
// stored metadata and its version stay, the rest applies, and
// Config.Logger gets a warning that names the field, never its value.
func (s *Store) Upsert(ctx context.Context, w usersync.Write) (u usersync.User, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsert)
	defer op.finish(ctx, &err)
	return s.upsert(ctx, w)
}

// Delete implements usersync.Store in one statement.
func (s *Store) Delete(ctx context.Context, w usersync.Write) (u usersync.User, outcome usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opDelete)
	defer op.finish(ctx, &err)
	return s.delete(ctx, w)
}

// UpsertBatch implements usersync.Store in one transaction, with one
// multi-row statement per 250 writes (SQLite, PostgreSQL: INSERT ... ON
// CONFLICT ... RETURNING; MySQL: a locking read of the rows, INSERT ... ON
// DUPLICATE KEY UPDATE, and a read-back of the users that changed).
//
// A write whose metadata the database refuses though Validate takes it is
// applied without it, as Upsert does; a write the database still refuses
// is skipped and the others applied: its outcome is Stale, and the error
// returned beside the outcomes joins a *usersync.WriteError wrapping
// usersync.ErrInvalid per skipped write, without the value. Any other
// failure fails the whole batch, which then changes nothing.
func (s *Store) UpsertBatch(ctx context.Context, ws []usersync.Write) (users []usersync.User, outcomes []usersync.Outcome, err error) {
	ctx, op := s.tel.start(ctx, opUpsertBatch)
	defer op.finish(ctx, &err)
	return s.upsertBatch(ctx, ws)
}

// Changes implements usersync.Store. On PostgreSQL and MySQL it first
// numbers the changes committed since the last call (in one short
// transaction, under the lock of the sequence row), so a change is in the
// feed as soon as a reader asks.
func (s *Store) Changes(ctx context.Context, after int64, limit int) (changes []usersync.Change, err error) {
	ctx, op := s.tel.start(ctx, opChanges)
	defer op.finish(ctx, &err)
	return s.changes(ctx, after, limit)
}

// PruneChanges implements usersync.Store in one statement, after numbering
// the committed changes (every change a reader can see has a Seq).
func (s *Store) PruneChanges(ctx context.Context, through int64, before time.Time) (n int, err error) {
	ctx, op := s.tel.start(ctx, opPruneChanges)
	defer op.finish(ctx, &err)
	return s.pruneChanges(ctx, through, before)
}

// LeaseCursors implements usersync.Store.
func (s *Store) LeaseCursors(ctx context.Context, prefix string) (cursors map[string]int64, err error) {
	ctx, op := s.tel.start(ctx, opLeaseCursors)
	defer op.finish(ctx, &err)
	return s.leaseCursors(ctx, prefix)
}

// AcquireLease implements usersync.Store.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (cursor int64, ok bool, err error) {
	ctx, op := s.tel.start(ctx, opAcquireLease)
	defer op.finish(ctx, &err)
	return s.acquireLease(ctx, name, holder, ttl)
}

// RenewLease implements usersync.Store.
func (s *Store) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (ok bool, err error) {
	ctx, op := s.tel.start(ctx, opRenewLease)
	defer op.finish(ctx, &err)
	return s.renewLease(ctx, name, holder, ttl, cursor)
}

// ReleaseLease implements usersync.Store.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) (err error) {
	ctx, op := s.tel.start(ctx, opReleaseLease)
	defer op.finish(ctx, &err)
	return s.releaseLease(ctx, name, holder)
}
