package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usersync/usersync"
)

// profileColumns is the one table of Profile columns: each field's columns
// and the column of its version, in the order of the column lists. Adding
// a Profile field means a row here and a migration; the statements, the
// arguments and the scan targets follow from it.
var profileColumns = []fieldColumns{
	{usersync.FieldName, "name_version", []column{text("name", func(p *usersync.Profile) *string { return &p.Name })}},
	{usersync.FieldGivenName, "given_name_version", []column{text("given_name", func(p *usersync.Profile) *string { return &p.GivenName })}},
	{usersync.FieldFamilyName, "family_name_version", []column{text("family_name", func(p *usersync.Profile) *string { return &p.FamilyName })}},
	{usersync.FieldEmail, "email_version", []column{text("email", func(p *usersync.Profile) *string { return &p.Email })}},
	// The flag belongs to the address it came with (email_verified_for):
	// a new address without a flag of its own is not verified (migration
	// 5, PostgreSQL 6).
	{usersync.FieldEmailVerified, "email_verified_version", []column{boolean("email_verified", func(p *usersync.Profile) *bool { return &p.EmailVerified }), verifiedFor}},
	{usersync.FieldPictureURL, "picture_url_version", []column{text("picture_url", func(p *usersync.Profile) *string { return &p.PictureURL })}},
	{usersync.FieldUsername, "username_version", []column{text("username", func(p *usersync.Profile) *string { return &p.Username })}},
	{usersync.FieldPhoneNumber, "phone_number_version", []column{text("phone_number", func(p *usersync.Profile) *string { return &p.PhoneNumber })}},
	{usersync.FieldExternalID, "external_id_version", []column{text("external_id", func(p *usersync.Profile) *string { return &p.ExternalID })}},
	{usersync.FieldLastSignInAt, "last_sign_in_at_version", []column{timestamp("last_sign_in_at", func(p *usersync.Profile) *time.Time { return &p.LastSignInAt })}},
	{usersync.FieldMetadata, "metadata_version", []column{{
		name: "metadata",
		arg: func(p *usersync.Profile, _ usersync.Fields, _ *dialect) any {
			if p.Metadata == nil {
				return nil
			}
			return string(p.Metadata)
		},
		dest: func(t *scanTarget) any { return (*jsonColumn)(&t.u.Metadata) },
	}}},
}

// cleared returns the Profile columns a tombstone clears: all but the
// external ID, the app's own key of the person (not personal data), which
// a tombstone keeps so that the app can still find its rows.
func cleared() []fieldColumns {
	out := make([]fieldColumns, 0, len(profileColumns))
	for _, pc := range profileColumns {
		if pc.field != usersync.FieldExternalID {
			out = append(out, pc)
		}
	}
	return out
}

// fieldColumns are the columns of one Profile field.
type fieldColumns struct {
	field   usersync.Fields
	version string // the column of the field's version
	cols    []column
}

// names returns the names of a field's columns.
func (pc *fieldColumns) names() []string {
	out := make([]string, len(pc.cols))
	for i, c := range pc.cols {
		out[i] = c.name
	}
	return out
}

// column is one column of a Profile field: the argument that writes it
// (from the write's profile and the fields it carries) and the scan target
// that reads it (nil for a column that is not read).
type column struct {
	name string
	arg  func(*usersync.Profile, usersync.Fields, *dialect) any
	dest func(*scanTarget) any
}

func text(name string, f func(*usersync.Profile) *string) column {
	return column{name, func(p *usersync.Profile, _ usersync.Fields, _ *dialect) any { return *f(p) }, func(t *scanTarget) any { return f(&t.u.Profile) }}
}

func boolean(name string, f func(*usersync.Profile) *bool) column {
	return column{name, func(p *usersync.Profile, _ usersync.Fields, _ *dialect) any { return *f(p) }, func(t *scanTarget) any { return f(&t.u.Profile) }}
}

func timestamp(name string, f func(*usersync.Profile) *time.Time) column {
	return column{name, func(p *usersync.Profile, _ usersync.Fields, d *dialect) any { return d.timeArg(*f(p)) }, func(t *scanTarget) any { return (*timeColumn)(f(&t.u.Profile)) }}
}

// verifiedFor is the address the stored email_verified was written with:
// the write's email if it carries one, else NULL (the flag then holds for
// whatever address is stored, as before migration 5). It is written, not
// read: a read's email_verified is the flag only while the stored email is
// that address, byte for byte (dialect.emailVerified).
var verifiedFor = column{
	name: "email_verified_for",
	arg: func(p *usersync.Profile, f usersync.Fields, _ *dialect) any {
		if f&usersync.FieldEmail == 0 {
			return nil
		}
		return p.Email
	},
}

// timeColumn scans a time column into a time.Time, NULL into the zero
// time: TIMESTAMPTZ (a time.Time), DATETIME(3) (text unless the MySQL DSN
// has parseTime=true; its times are UTC) or SQLite's Unix milliseconds.
type timeColumn time.Time

func (t *timeColumn) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*t = timeColumn{}
	case time.Time:
		*t = timeColumn(v)
	case int64:
		*t = timeColumn(time.UnixMilli(v))
	case []byte:
		return t.parse(string(v))
	case string:
		return t.parse(v)
	default:
		return fmt.Errorf("time column holds a %T", src)
	}
	return nil
}

func (t *timeColumn) parse(s string) error {
	v, err := time.ParseInLocation("2006-01-02 15:04:05.999999999", s, time.UTC)
	if err != nil {
		return fmt.Errorf("time column: %w", err)
	}
	*t = timeColumn(v)
	return nil
}

// jsonColumn scans a JSON column (TEXT, JSONB or JSON) into a
// json.RawMessage of its own, NULL into nil.
type jsonColumn json.RawMessage

func (j *jsonColumn) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append(jsonColumn(nil), v...)
	case string:
		*j = jsonColumn(v)
	default:
		return fmt.Errorf("metadata column holds a %T", src)
	}
	return nil
}

// The column lists of every statement, derived from profileColumns:
// insertColumns is what an INSERT writes (insertArgs follows it),
// userColumns what a read returns (scanUser follows it).
var insertColumns, userColumns = columnLists()

func columnLists() (insert, user []string) {
	var values, read, versions []string
	for _, pc := range profileColumns {
		values = append(values, pc.names()...)
		for _, c := range pc.cols {
			if c.dest != nil {
				read = append(read, c.name)
			}
		}
		versions = append(versions, pc.version)
	}
	keys := []string{"id", "token_identifier", "issuer", "subject"}
	// change_count counts the row's changes (migration 4): 1 on insert.
	times := []string{"version", "created_at", "updated_at", "deleted_at", "change_count"}
	insert = append(append(append(append([]string(nil), keys...), values...), versions...), times...)
	user = append(append(append([]string(nil), keys...), read...), times...)
	return insert, user
}

// insertArgs appends the INSERT arguments of a user row to args: the
// fields in fields get version v, the others 0. A zero deleted is NULL.
func insertArgs(args []any, d *dialect, w *usersync.Write, fields usersync.Fields, created, updated, deleted time.Time) []any {
	args = append(args, w.ID, w.TokenIdentifier, w.Issuer, w.Subject)
	for _, pc := range profileColumns {
		for _, c := range pc.cols {
			args = append(args, c.arg(&w.Profile, fields, d))
		}
	}
	var rowVersion int64
	for _, pc := range profileColumns {
		var fv int64
		if fields&pc.field != 0 {
			fv, rowVersion = int64(w.Version), int64(w.Version)
		}
		args = append(args, fv)
	}
	return append(args, rowVersion, d.timeArg(created), d.timeArg(updated), d.timeArg(deleted), int64(1))
}

// zeroTime is the time of a NULL column.
var zeroTime time.Time

// scanTarget is everything one row is scanned into, in one allocation.
type scanTarget struct {
	u       usersync.User
	version int64
	changes int64
	dest    [32]any
}

// scanUsers reads every row of userColumns, handing each user to f, and
// closes rows. An error of f stops the reading.
func scanUsers(rows *sql.Rows, f func(usersync.User) error) error {
	for rows.Next() {
		u, err := scanUser(rows)
		if err == nil {
			err = f(u)
		}
		if err != nil {
			rows.Close()
			return err
		}
	}
	return errors.Join(rows.Err(), rows.Close())
}

// scanUser reads one row of userColumns.
func scanUser(row interface{ Scan(...any) error }) (usersync.User, error) {
	u, _, err := scanRow(row)
	return u, err
}

// scanRow reads one row of userColumns, and its change_count: 1 for a row
// that the statement of the read created.
func scanRow(row interface{ Scan(...any) error }) (usersync.User, int64, error) {
	t := new(scanTarget)
	dest := append(t.dest[:0], &t.u.ID, &t.u.TokenIdentifier, &t.u.Issuer, &t.u.Subject)
	for _, pc := range profileColumns {
		for _, c := range pc.cols {
			if c.dest != nil {
				dest = append(dest, c.dest(t))
			}
		}
	}
	dest = append(dest, &t.version, (*timeColumn)(&t.u.CreatedAt), (*timeColumn)(&t.u.UpdatedAt), (*timeColumn)(&t.u.DeletedAt), &t.changes)
	if err := row.Scan(dest...); err != nil {
		return usersync.User{}, 0, err
	}
	u := t.u
	u.Version = usersync.Version(t.version)
	return u, t.changes, nil
}

// storable reports whether a lookup key can be stored at all: valid UTF-8
// without NUL. A lookup of one that cannot is not found, without asking
// the database (PostgreSQL would fail the query).
func storable(key string) bool {
	return utf8.ValidString(key) && strings.IndexByte(key, 0) < 0
}
