package sqlstore

import (
	"context"
	"io/fs"
	"path"
	"testing/fstest"
)

// MigrateTo migrates up to version v only, for tests of the upgrade of a
// database an older release made.
func (s *Store) MigrateTo(ctx context.Context, v int) error { return s.migrate(ctx, v) }

// Retries returns how many statements the store ran again.
func (s *Store) Retries() int64 { return s.retries.Load() }

// AddMigration adds the migration file name ("099_x.sql") of the store's
// dialect, holding sql, to those Migrate runs: for tests of a migration
// that fails.
func (s *Store) AddMigration(name, sql string) error {
	files := fstest.MapFS{}
	err := fs.WalkDir(s.schemaFiles, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(s.schemaFiles, p)
		files[p] = &fstest.MapFile{Data: b}
		return err
	})
	files[path.Join(s.dialect.schemaDir, name)] = &fstest.MapFile{Data: []byte(sql)}
	s.schemaFiles = files
	return err
}

// MigrationStatements returns the statements of migration v, as Migrate
// runs them on MySQL and SQLite: for tests of a migration that stopped
// midway.
func (s *Store) MigrationStatements(v int) []string {
	ms, _ := s.migrations(s.table)
	for _, m := range ms {
		if m.version == v {
			return m.stmts
		}
	}
	return nil
}
