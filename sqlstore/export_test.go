package sqlstore

import "context"

// MigrateTo migrates up to version v only, for tests of the upgrade of a
// database an older release made.
func (s *Store) MigrateTo(ctx context.Context, v int) error { return s.migrate(ctx, v) }

// Retries returns how many statements the store ran again.
func (s *Store) Retries() int64 { return s.retries.Load() }
