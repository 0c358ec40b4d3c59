package sqlstore

import (
	"database/sql"
	"testing"
)

// doneBefore takes "already exists" as done only for the object the
// failing statement itself creates, and "unknown column" only for a
// temporary column of the migration.
func TestDoneBeforeOnlyForTheStatementsOwnObject(t *testing.T) {
	s := &Store{dialect: dialects[MySQL], table: tableName{schema: "app", base: "users"}, schemaFiles: schemaFS}
	ms, err := s.migrations(s.table)
	if err != nil {
		t.Fatal(err)
	}
	v3, v4 := ms[2], ms[3]
	e := func(n uint16, msg string) error { return &MySQLError{Number: n, Message: msg} }
	tests := []struct {
		name string
		m    migration
		st   string
		err  error
		want bool
	}{
		{"the column the statement adds", v4, v4.stmts[0], e(1060, "Duplicate column name 'change_count'"), true},
		{"one of the columns the statement adds", v3, v3.stmts[1], e(1060, "Duplicate column name 'family_name'"), true},
		{"a column the statement does not add", v3, "ALTER TABLE `app`.`users` MODIFY id VARBINARY(128) NOT NULL, CHANGE a given_name TEXT",
			e(1060, "Duplicate column name 'given_name'"), false},
		{"a duplicate column without its name", v4, v4.stmts[0], e(1060, "Duplicate column name"), false},
		{"the index the statement creates", v3, "CREATE INDEX `users_external_id` ON `app`.`users` (issuer, external_id)", e(1061, "Duplicate key name 'users_external_id'"), true},
		{"another index", v3, "CREATE INDEX `users_external_id` ON `app`.`users` (issuer, external_id)", e(1061, "Duplicate key name 'other'"), false},
		{"an index from an ALTER TABLE", v3, "ALTER TABLE `app`.`users` ADD INDEX x (a)", e(1061, "Duplicate key name 'x'"), false},
		{"the trigger the statement creates (MariaDB)", v4, v4.stmts[4], e(1359, "Trigger 'app.users_changes_insert' already exists"), true},
		{"the trigger the statement creates (MySQL 8)", v4, v4.stmts[4], e(1359, "Trigger already exists"), true},
		{"a trigger exists, from a statement that makes none", v4, v4.stmts[0], e(1359, "Trigger already exists"), false},
		{"the table the statement creates", v4, "CREATE TABLE `app`.`users_changes` (id BIGINT)", e(1050, "Table 'users_changes' already exists"), true},
		{"a duplicate entry", v4, v4.stmts[3], e(1062, "Duplicate entry '1' for key 'PRIMARY'"), false},
		{"a duplicate foreign key", v4, v4.stmts[0], e(1826, "Duplicate foreign key constraint name 'fk'"), false},
		{"a temporary column of the migration, gone", v3, v3.stmts[2], e(1054, "Unknown column 'created_at_utc' in 'SET'"), true},
		{"a column that is not the migration's temporary", v3, v3.stmts[2], e(1054, "Unknown column 'created_at' in 'SET'"), false},
		{"a temporary column of another migration", v4, v4.stmts[0], e(1054, "Unknown column 'created_at_utc' in 'users'"), false},
		{"no MySQL error", v4, v4.stmts[0], sql.ErrConnDone, false},
	}
	for _, tt := range tests {
		if got := doneBefore(tt.m, s.table, tt.st, tt.err); got != tt.want {
			t.Errorf("%s: doneBefore = %v, want %v\n%s", tt.name, got, tt.want, tt.st)
		}
	}
}

// Every MySQL migration says what it leaves, which Migrate checks before
// it records the version.
func TestMySQLNeedsCoverEveryMigration(t *testing.T) {
	s := &Store{dialect: dialects[MySQL], table: tableName{base: "users"}, schemaFiles: schemaFS}
	ms, err := s.migrations(s.table)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if n := mysqlNeeds(m.version, s.table); len(n.columns) == 0 {
			t.Errorf("migration %d: no needs in mysqlNeeds", m.version)
		}
	}
}
