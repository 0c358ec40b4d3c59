package sqlstore

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/usersync/usersync"
)

// identifier is what each part of a table name may be: it is quoted, but
// never built from anything else.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// tableName is a validated table name, plain ("users") or qualified by its
// schema or database ("auth.users").
type tableName struct {
	schema, base string
}

func parseTableName(name string) (tableName, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return tableName{}, fmt.Errorf("%w: table name %q has more than one dot", usersync.ErrInvalid, name)
	}
	for _, p := range parts {
		if !identifier.MatchString(p) {
			return tableName{}, fmt.Errorf("%w: table name %q is not an identifier, or schema.identifier", usersync.ErrInvalid, name)
		}
	}
	if len(parts) == 2 {
		return tableName{schema: parts[0], base: parts[1]}, nil
	}
	return tableName{base: parts[0]}, nil
}

// withBase returns the name of another table in the same schema.
func (t tableName) withBase(base string) string {
	return tableName{schema: t.schema, base: base}.String()
}

func (t tableName) String() string {
	if t.schema != "" {
		return t.schema + "." + t.base
	}
	return t.base
}

// quoted returns the name quoted part by part: "auth"."users".
func (t tableName) quoted(d *dialect) string {
	return t.qualified(d, "")
}

// qualified returns the quoted, schema-qualified name of an object that
// belongs to the table, base + "_" + suffix ("" for the table itself):
// "auth"."users_migrations".
func (t tableName) qualified(d *dialect, suffix string) string {
	name := d.quote(t.object(suffix))
	if t.schema != "" {
		return d.quote(t.schema) + "." + name
	}
	return name
}

// object returns the unquoted name of an object that belongs to the
// table: base + "_" + suffix, or the base for "".
func (t tableName) object(suffix string) string {
	if suffix == "" {
		return t.base
	}
	return t.base + "_" + suffix
}

// placeholders fill a migration file: {{table}} is the quoted, qualified
// table; {{table_name}} its quoted, unqualified name; {{name:x}} the quoted
// name of the table's object x, unqualified (PostgreSQL and MySQL index
// names); {{qualified:x}} the same qualified (SQLite index names, and other
// tables).
var placeholder = regexp.MustCompile(`\{\{(table|table_name|name:[a-z_]+|qualified:[a-z_]+)\}\}`)

func (t tableName) fill(d *dialect, file string) string {
	return placeholder.ReplaceAllStringFunc(file, func(m string) string {
		key := m[2 : len(m)-2]
		kind, suffix, _ := strings.Cut(key, ":")
		switch kind {
		case "table":
			return t.quoted(d)
		case "table_name":
			return d.quote(t.base)
		case "name":
			return d.quote(t.object(suffix))
		}
		return t.qualified(d, suffix)
	})
}
