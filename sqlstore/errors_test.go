package sqlstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/usersync/usersync"
)

// Errors shaped like the drivers' own, without importing them.
type pgError struct{ code, msg string }

func (e *pgError) Error() string    { return e.msg }
func (e *pgError) SQLState() string { return e.code }

type MySQLError struct {
	Number   uint16
	SQLState [5]byte
	Message  string
}

func (e *MySQLError) Error() string { return fmt.Sprintf("Error %d: %s", e.Number, e.Message) }

func TestWrapMapsRefusedValuesToErrInvalid(t *testing.T) {
	s := &Store{table: tableName{base: "users"}}
	tests := []struct {
		name    string
		err     error
		invalid bool
	}{
		{"PostgreSQL invalid byte sequence", &pgError{"22021", `invalid byte sequence for encoding "UTF8": 0xff in "Ada\xff"`}, true},
		{"PostgreSQL numeric out of range", &pgError{"22003", "value overflows numeric format"}, true},
		{"PostgreSQL unsupported Unicode escape", &pgError{"22P05", `unsupported Unicode escape sequence \ud800`}, true},
		{"PostgreSQL serialization failure", &pgError{"40001", "could not serialize access"}, false},
		{"MySQL incorrect string value", &MySQLError{Number: 1366, Message: `Incorrect string value: '\xFF' for column 'name'`}, true},
		{"MariaDB JSON CHECK", &MySQLError{Number: 4025, Message: "CONSTRAINT `users.metadata` failed"}, true},
		{"MySQL deadlock", &MySQLError{Number: 1213, Message: "Deadlock found"}, false},
		{"connection refused", errors.New("dial tcp: connection refused"), false},
	}
	for _, tt := range tests {
		err := s.wrap("upsert", fmt.Errorf("exec: %w", tt.err))
		if errors.Is(err, usersync.ErrInvalid) != tt.invalid {
			t.Errorf("%s: %v: ErrInvalid = %v, want %v", tt.name, err, !tt.invalid, tt.invalid)
		}
		if tt.invalid && (strings.Contains(err.Error(), "Ada") || strings.Contains(err.Error(), "Incorrect")) {
			t.Errorf("%s: the error quotes the database's message, which may quote the value: %v", tt.name, err)
		}
	}
}

// A MySQL deadlock is retried wherever it sits in the error's tree: behind
// a wrap, or joined with a Close error (rows.Err, rows.Close).
func TestRetryableFindsMySQLErrorsInJoinedErrors(t *testing.T) {
	deadlock := &MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
	for name, err := range map[string]error{
		"bare":            deadlock,
		"wrapped":         fmt.Errorf("migrate: read the schema: %w", deadlock),
		"joined":          errors.Join(deadlock, nil),
		"wrapped, joined": fmt.Errorf("read: %w", errors.Join(errors.New("close"), deadlock)),
	} {
		if !retryable(err) {
			t.Errorf("%s: not retryable", name)
		}
	}
	if retryable(errors.Join(errors.New("a"), fmt.Errorf("b: %w", &MySQLError{Number: 1062}))) {
		t.Error("a duplicate key is retryable")
	}
	// A Galera node reading a trigger that another node's DDL is making.
	if !retryable(fmt.Errorf("upsert: %w", &MySQLError{Number: 1064, Message: "Unknown trigger has an error in its body: 'Query was empty'"})) {
		t.Error("a trigger read half made is not retryable")
	}
	// A Galera node whose parse of a trigger's body a brute-force abort
	// cut short (seen on MariaDB 10.11, at a different token each time).
	if !retryable(fmt.Errorf("upsert organization: %w", &MySQLError{Number: 1064, Message: "Trigger 'users_org_upd' has an error in its body: 'You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'END, NEW.updated_at, 1, NEW.org_id, '');\n\tEND IF;\nEND' at line 6'"})) {
		t.Error("a trigger's body whose parse was cut short is not retryable")
	}
	if retryable(&MySQLError{Number: 1064, Message: "You have an error in your SQL syntax"}) {
		t.Error("a syntax error is retryable")
	}
}
