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
func (s *Store) Get(ctx context.Context, id string) (usersync.User, error) {
	ctx, o := s.tel.start(ctx, opGet)
	r0, err := s.get(ctx, id)
	o.end(ctx, err)
	return r0, err
}

// GetByExternalID implements usersync.Store.
func (s *Store) GetByExternalID(ctx context.Context, issuer, externalID string) (usersync.User, error) {
	ctx, o := s.tel.start(ctx, opGetByExternalID)
	r0, err := s.getByExternalID(ctx, issuer, externalID)
	o.end(ctx, err)
	return r0, err
}

// GetByTokenIdentifier implements usersync.Store.
func (s *Store) GetByTokenIdentifier(ctx context.Context, tokenIdentifier string) (usersync.User, error) {
	ctx, o := s.tel.start(ctx, opGetByTokenIdentifier)
	r0, err := s.getByTokenIdentifier(ctx, tokenIdentifier)
	o.end(ctx, err)
	return r0, err
}

// GetMany implements usersync.Store. Up to 1,000 distinct IDs cost one
// query; more are fetched in chunks of 1,000.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]usersync.User, error) {
	ctx, o := s.tel.start(ctx, opGetMany)
	r0, err := s.getMany(ctx, ids)
	o.end(ctx, err)
	return r0, err
}

// List implements usersync.Store with keyset pagination on the primary key.
func (s *Store) List(ctx context.Context, after string, limit int) ([]usersync.User, error) {
	ctx, o := s.tel.start(ctx, opList)
	r0, err := s.list(ctx, after, limit)
	o.end(ctx, err)
	return r0, err
}

// Count implements usersync.Store.
func (s *Store) Count(ctx context.Context) (int, error) {
	ctx, o := s.tel.start(ctx, opCount)
	r0, err := s.count(ctx)
	o.end(ctx, err)
	return r0, err
}

// Upsert implements usersync.Store in one statement.
func (s *Store) Upsert(ctx context.Context, w usersync.Write) (usersync.User, usersync.Outcome, error) {
	ctx, o := s.tel.start(ctx, opUpsert)
	r0, r1, err := s.upsert(ctx, w)
	o.end(ctx, err)
	return r0, r1, err
}

// Delete implements usersync.Store in one statement.
func (s *Store) Delete(ctx context.Context, w usersync.Write) (usersync.User, usersync.Outcome, error) {
	ctx, o := s.tel.start(ctx, opDelete)
	r0, r1, err := s.delete(ctx, w)
	o.end(ctx, err)
	return r0, r1, err
}

// UpsertBatch implements usersync.Store in one transaction, with one
// multi-row statement per 250 writes (SQLite, PostgreSQL: INSERT ... ON
// CONFLICT ... RETURNING; MySQL: a locking read of the rows, INSERT ... ON
// DUPLICATE KEY UPDATE, and a read-back of the users that changed).
func (s *Store) UpsertBatch(ctx context.Context, ws []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	ctx, o := s.tel.start(ctx, opUpsertBatch)
	r0, r1, err := s.upsertBatch(ctx, ws)
	o.end(ctx, err)
	return r0, r1, err
}

// Changes implements usersync.Store. On PostgreSQL and MySQL it first
// numbers the changes committed since the last call (in one short
// transaction, under the lock of the sequence row), so a change is in the
// feed as soon as a reader asks.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]usersync.Change, error) {
	ctx, o := s.tel.start(ctx, opChanges)
	r0, err := s.changes(ctx, after, limit)
	o.end(ctx, err)
	return r0, err
}

// PruneChanges implements usersync.Store in one statement, after numbering
// the committed changes (every change a reader can see has a Seq).
func (s *Store) PruneChanges(ctx context.Context, through int64, before time.Time) (int, error) {
	ctx, o := s.tel.start(ctx, opPruneChanges)
	r0, err := s.pruneChanges(ctx, through, before)
	o.end(ctx, err)
	return r0, err
}

// LeaseCursors implements usersync.Store.
func (s *Store) LeaseCursors(ctx context.Context, prefix string) (map[string]int64, error) {
	ctx, o := s.tel.start(ctx, opLeaseCursors)
	r0, err := s.leaseCursors(ctx, prefix)
	o.end(ctx, err)
	return r0, err
}

// AcquireLease implements usersync.Store.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	ctx, o := s.tel.start(ctx, opAcquireLease)
	r0, r1, err := s.acquireLease(ctx, name, holder, ttl)
	o.end(ctx, err)
	return r0, r1, err
}

// RenewLease implements usersync.Store.
func (s *Store) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error) {
	ctx, o := s.tel.start(ctx, opRenewLease)
	r0, err := s.renewLease(ctx, name, holder, ttl, cursor)
	o.end(ctx, err)
	return r0, err
}

// ReleaseLease implements usersync.Store.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	ctx, o := s.tel.start(ctx, opReleaseLease)
	err := s.releaseLease(ctx, name, holder)
	o.end(ctx, err)
	return err
}
