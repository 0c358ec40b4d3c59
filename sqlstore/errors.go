package sqlstore

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/usersync/usersync"
)

// Database errors are told apart by their codes, read without importing a
// driver: pgx's (and lib/pq's) errors have a SQLState method; the MySQL
// driver's MySQLError has a Number field.

// sqlState returns err's SQLSTATE, or "".
func sqlState(err error) string {
	var e interface{ SQLState() string }
	if errors.As(err, &e) {
		return e.SQLState()
	}
	return ""
}

// mysqlNumber returns the error number of a MySQL or MariaDB error in
// err's tree (errors.Join included), or 0.
func mysqlNumber(err error) int {
	if err == nil {
		return 0
	}
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct && v.Type().Name() == "MySQLError" {
		if f := v.FieldByName("Number"); f.IsValid() && f.CanUint() {
			return int(f.Uint())
		}
	}
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		return mysqlNumber(e.Unwrap())
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			if n := mysqlNumber(inner); n != 0 {
				return n
			}
		}
	}
	return 0
}

// keyTaken reports whether err is a unique-key violation: PostgreSQL
// 23505, SQLite's SQLITE_CONSTRAINT_PRIMARYKEY or _UNIQUE, MySQL 1062.
func keyTaken(err error) bool {
	if sqlState(err) == "23505" || mysqlNumber(err) == 1062 {
		return true
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		c := coded.Code()
		return c == 1555 || c == 2067 // modernc.org/sqlite's extended codes
	}
	return false
}

// refusedValue reports whether the database refused a value of a write:
// bad input, not a failure of the database.
func refusedValue(err error) bool {
	if st := sqlState(err); st != "" {
		return strings.HasPrefix(st, "22") // data exception: encoding, range, JSON, ...
	}
	switch mysqlNumber(err) {
	case 1264, // out of range
		1300, // invalid string for the character set
		1366, // incorrect string value
		1406, // data too long
		3140, // invalid JSON text (MySQL)
		4025, // CHECK failed: MariaDB's JSON is LONGTEXT CHECK (json_valid(...))
		4038, // JSON syntax error (MariaDB)
		4040: // JSON too deep (MariaDB)
		return true
	}
	return false
}

// refusal is in the chain of wrap's error for a value the database
// refused (refusedValue): its code, without the database's message, which
// may quote the value.
type refusal struct {
	code string // the SQLSTATE, or MySQL's error number
}

func (r *refusal) Error() string { return "the database refused a value (error " + r.code + ")" }

// refused returns the refusal in err's chain, or nil.
func refused(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// wrapN is wrap for a statement that ran attempts times: the count goes
// into the error, and so into the log line of the failure.
func (s *Store) wrapN(op string, attempts int, err error) error {
	if attempts > 1 {
		op = fmt.Sprintf("%s (%d attempts)", op, attempts)
	}
	return s.wrap(op, err)
}

// wrap adds the operation and table to err. A value the database refused
// becomes usersync.ErrInvalid, without the database's message, which may
// quote the value.
func (s *Store) wrap(op string, err error) error {
	if keyTaken(err) {
		// The upserts resolve conflicts of the token identifier, so a
		// unique key that still clashes is the ID: another user's.
		return fmt.Errorf("%w: usersync/sqlstore: %s %s: the ID is taken by another user", usersync.ErrInvalid, op, s.table)
	}
	if refusedValue(err) {
		code := sqlState(err)
		if code == "" {
			code = fmt.Sprint(mysqlNumber(err))
		}
		return fmt.Errorf("%w: usersync/sqlstore: %s %s: %w", usersync.ErrInvalid, op, s.table, &refusal{code})
	}
	return fmt.Errorf("usersync/sqlstore: %s %s: %w", op, s.table, err)
}

// storable reports whether a lookup key can be stored at all: valid UTF-8
// without NUL. A lookup of one that cannot is not found, without asking
// the database (PostgreSQL would fail the query).
func storable(key string) bool {
	return utf8.ValidString(key) && strings.IndexByte(key, 0) < 0
}
