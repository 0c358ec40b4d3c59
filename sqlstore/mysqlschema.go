package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/usersync/usersync"
)

// MySQL runs every DDL statement in a transaction of its own, so a
// migration that stopped midway is run again whole: a statement that
// creates what exists already then fails, and Migrate must tell "done
// before" from "something else of that name". It takes such a failure as
// done only for the object the statement itself creates (doneBefore), and
// before it records the version it checks that the schema holds what the
// version needs (checkMySQLSchema).

// objectName matches a name as the migrations write it: `db`.`name`,
// `name` or name.
const objectName = "((?:`[^`]+`|\\w+)(?:\\.(?:`[^`]+`|\\w+))?)"

var (
	createsTable   = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?` + objectName)
	createsIndex   = regexp.MustCompile(`(?is)^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?` + objectName)
	createsTrigger = regexp.MustCompile(`(?is)^\s*CREATE\s+TRIGGER\s+` + objectName +
		`\s+(BEFORE|AFTER)\s+(INSERT|UPDATE|DELETE)\s+ON\s+` + objectName + `\s+FOR\s+EACH\s+ROW\s+(.*)$`)
	altersTable = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+`)
	addsColumn  = regexp.MustCompile(`(?is)\bADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?` + objectName)
	// The name in MySQL's and MariaDB's messages: "Duplicate column name
	// 'x'", "Duplicate key name 'x'", "Table 'x' already exists", "Trigger
	// 'db.x' already exists" (MySQL 8: "Trigger already exists").
	quotedInMessage = regexp.MustCompile(`'([^']*)'`)
)

// baseName returns the last part of a name as the migrations write it,
// without quotes (the names are identifiers: no dots, no backticks).
func baseName(name string) string {
	if i := strings.LastIndex(name, "."); i >= 0 {
		name = name[i+1:]
	}
	return strings.Trim(name, "`")
}

// withoutComments returns st without the comment lines that lead it (a
// statement of a migration file keeps the comments above it).
func withoutComments(st string) string {
	for strings.HasPrefix(strings.TrimSpace(st), "--") {
		_, rest, _ := strings.Cut(strings.TrimSpace(st), "\n")
		st = rest
	}
	return st
}

// doneBefore reports whether err, from statement st of MySQL migration m
// (for the users table t), says that st ran before: a migration that
// stopped midway (a crash, a missing privilege, a schema the check
// refused) is run again whole. That is so when what st itself creates
// exists already (a column that st adds, the index, table or trigger that
// st creates), or when st uses a column that m adds and removes again (a
// temporary, such as version 3's created_at_utc), which is gone because
// the statement of m that removes it ran. Any other failure, and an
// "already exists" of another object (the column of another clause, a
// duplicate entry), is an error. Whether what exists is what m makes is
// checked after its statements (checkMySQLSchema).
func doneBefore(m migration, t tableName, st string, err error) bool {
	n, msg := mysqlError(err)
	named := ""
	if q := quotedInMessage.FindStringSubmatch(msg); q != nil {
		named = q[1]
		if i := strings.LastIndex(named, "."); i >= 0 {
			named = named[i+1:]
		}
	}
	st = withoutComments(st)
	same := func(name string) bool { return named == "" || strings.EqualFold(named, baseName(name)) }
	isNamed := func(name string) bool { return strings.EqualFold(name, named) }
	switch n {
	case 1050: // table exists
		c := createsTable.FindStringSubmatch(st)
		return c != nil && same(c[1])
	case 1061: // duplicate key name
		c := createsIndex.FindStringSubmatch(st)
		return c != nil && same(c[1])
	case 1359: // trigger exists
		c := createsTrigger.FindStringSubmatch(st)
		return c != nil && same(c[1])
	case 1060: // duplicate column
		return named != "" && slices.ContainsFunc(addedColumns(st), isNamed)
	case 1054: // unknown column
		if named == "" || !slices.ContainsFunc(mysqlNeeds(m.version, t).dropped[t.base], isNamed) {
			return false
		}
		for _, other := range m.stmts {
			if slices.ContainsFunc(addedColumns(other), isNamed) {
				return true // added by m, and dropped by m: a temporary
			}
		}
	}
	return false
}

// addedColumns returns the columns an ALTER TABLE statement adds.
func addedColumns(st string) []string {
	st = withoutComments(st)
	if !altersTable.MatchString(st) {
		return nil
	}
	var cols []string
	for _, c := range addsColumn.FindAllStringSubmatch(st, -1) {
		cols = append(cols, baseName(c[1]))
	}
	return cols
}

// mysqlError returns the number and message of a MySQL or MariaDB error
// in err's chain, or 0 and "".
func mysqlError(err error) (int, string) {
	n := mysqlNumber(err)
	if n == 0 {
		return 0, ""
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct && v.Type().Name() == "MySQLError" {
			if f := v.FieldByName("Message"); f.IsValid() && f.Kind() == reflect.String {
				return n, f.String()
			}
		}
	}
	return n, ""
}

// schemaNeeds is what a MySQL migration leaves in the schema: the columns
// of tables (table -> "name type[|type] [null], ..."; a type is
// information_schema's DATA_TYPE, and a column without "null" is NOT
// NULL), columns it drops, and indexes. Its triggers are checked against
// its own CREATE TRIGGER statements.
type schemaNeeds struct {
	columns map[string]string
	dropped map[string][]string
	indexes []indexNeed
}

// indexNeed is an index: its table, name, uniqueness and columns in order.
type indexNeed struct {
	table, name string
	unique      bool
	columns     string // "a,b"
}

// mysqlNeeds returns what MySQL migration version leaves, for the users
// table t. A migration added to schema/mysql adds its needs here.
func mysqlNeeds(version int, t tableName) schemaNeeds {
	users, leases, changes, sequence := t.base, t.object("leases"), t.object("changes"), t.object("sequence")
	switch version {
	case 1:
		return schemaNeeds{
			columns: map[string]string{users: "id varchar, token_identifier varchar, issuer varchar, subject varchar, " +
				"name text, email text, email_verified tinyint, picture_url text, username text, phone_number text, metadata json|longtext null, " +
				"name_version bigint, email_version bigint, picture_url_version bigint, username_version bigint, phone_number_version bigint, metadata_version bigint, " +
				"version bigint, created_at bigint, updated_at bigint, deleted_at bigint null"},
			indexes: []indexNeed{{users, "PRIMARY", true, "id"}, {users, "token_identifier", true, "token_identifier"}},
		}
	case 2:
		return schemaNeeds{columns: map[string]string{users: "id varbinary, token_identifier varbinary, email_verified_version bigint"}}
	case 3:
		return schemaNeeds{
			columns: map[string]string{
				users: "issuer varbinary, given_name text, given_name_version bigint, family_name text, family_name_version bigint, " +
					"external_id varbinary, external_id_version bigint, last_sign_in_at datetime null, last_sign_in_at_version bigint, " +
					"created_at datetime, updated_at datetime, deleted_at datetime null",
				leases: "name varbinary, holder varbinary, expires_at bigint, cursor_pos bigint",
			},
			dropped: map[string][]string{users: {"created_at_utc", "updated_at_utc", "deleted_at_utc"}},
			indexes: []indexNeed{{users, t.object("external_id"), false, "issuer,external_id"}, {leases, "PRIMARY", true, "name"}},
		}
	case 4:
		return schemaNeeds{
			columns: map[string]string{
				users:    "change_count bigint",
				changes:  "id bigint, seq bigint null, user_id varbinary, user_seq bigint, outcome tinyint, at datetime",
				sequence: "id tinyint, last_seq bigint",
			},
			indexes: []indexNeed{{changes, "PRIMARY", true, "id"}, {changes, t.object("changes_seq"), true, "seq"}, {sequence, "PRIMARY", true, "id"}},
		}
	case 5:
		return schemaNeeds{columns: map[string]string{users: "email_verified_for text null"}}
	}
	return schemaNeeds{}
}

// checkMySQLSchema checks that the schema holds what migration m needs
// (mysqlNeeds, and the triggers m creates, as m defines them), failing
// with an error wrapping usersync.ErrInvalid and ErrSchemaMismatch that
// names every difference.
func (s *Store) checkMySQLSchema(ctx context.Context, conn *sql.Conn, t tableName, m migration) error {
	needs := mysqlNeeds(m.version, t)
	var problems []string
	q := func(query string, args ...any) (*sql.Rows, error) {
		// The schema: the table's database, or the connection's.
		return conn.QueryContext(ctx, query, append([]any{t.schema, t.schema}, args...)...)
	}
	const inSchema = "table_schema = IF(? = '', DATABASE(), ?)"

	for _, table := range sortedKeys(needs.columns) {
		type col struct {
			typ      string
			nullable bool
		}
		have := map[string]col{}
		rows, err := q("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE "+inSchema+" AND table_name = ?", table)
		if err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		for rows.Next() {
			var name, typ, nullable string
			if err := rows.Scan(&name, &typ, &nullable); err != nil {
				rows.Close()
				return s.wrap("migrate: read the schema", err)
			}
			have[strings.ToLower(name)] = col{strings.ToLower(typ), nullable == "YES"}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		if len(have) == 0 {
			problems = append(problems, fmt.Sprintf("table %s is missing", table))
			continue
		}
		for spec := range strings.SplitSeq(needs.columns[table], ",") {
			f := strings.Fields(spec)
			name, types, nullable := f[0], strings.Split(f[1], "|"), len(f) > 2
			c, ok := have[name]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("column %s.%s is missing", table, name))
			case !slices.Contains(types, c.typ):
				problems = append(problems, fmt.Sprintf("column %s.%s is %s, not %s", table, name, c.typ, strings.Join(types, " or ")))
			case c.nullable && !nullable:
				problems = append(problems, fmt.Sprintf("column %s.%s is nullable, not NOT NULL", table, name))
			case !c.nullable && nullable:
				problems = append(problems, fmt.Sprintf("column %s.%s is NOT NULL, not nullable", table, name))
			}
		}
		for _, name := range needs.dropped[table] {
			if _, ok := have[name]; ok {
				problems = append(problems, fmt.Sprintf("column %s.%s is still there", table, name))
			}
		}
	}

	for _, ix := range needs.indexes {
		rows, err := q("SELECT non_unique, column_name FROM information_schema.statistics WHERE "+inSchema+" AND table_name = ? AND index_name = ? ORDER BY seq_in_index",
			ix.table, ix.name)
		if err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		var cols []string
		unique := true
		for rows.Next() {
			var nonUnique int
			var col string
			if err := rows.Scan(&nonUnique, &col); err != nil {
				rows.Close()
				return s.wrap("migrate: read the schema", err)
			}
			cols, unique = append(cols, strings.ToLower(col)), nonUnique == 0
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		switch got := strings.Join(cols, ","); {
		case got == "":
			problems = append(problems, fmt.Sprintf("index %s of %s is missing", ix.name, ix.table))
		case got != ix.columns || unique != ix.unique:
			problems = append(problems, fmt.Sprintf("index %s of %s is %s, not %s", ix.name, ix.table,
				describeIndex(got, unique), describeIndex(ix.columns, ix.unique)))
		}
	}

	for _, st := range m.stmts {
		want := createsTrigger.FindStringSubmatch(withoutComments(st))
		if want == nil {
			continue
		}
		name := baseName(want[1])
		rows, err := q("SELECT action_timing, event_manipulation, event_object_table, action_statement FROM information_schema.triggers WHERE "+
			strings.ReplaceAll(inSchema, "table_schema", "trigger_schema")+" AND trigger_name = ?", name)
		if err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		found := false
		var timing, event, table, body string
		for rows.Next() {
			found = true
			if err := rows.Scan(&timing, &event, &table, &body); err != nil {
				rows.Close()
				return s.wrap("migrate: read the schema", err)
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return s.wrap("migrate: read the schema", err)
		}
		switch {
		case !found:
			problems = append(problems, fmt.Sprintf("trigger %s is missing", name))
		case !strings.EqualFold(timing, want[2]) || !strings.EqualFold(event, want[3]) || !strings.EqualFold(table, baseName(want[4])) ||
			strings.Join(strings.Fields(body), " ") != strings.Join(strings.Fields(want[5]), " "):
			problems = append(problems, fmt.Sprintf("trigger %s is not the migration's (%s %s on %s, another body)", name, timing, event, table))
		}
	}

	if len(problems) > 0 {
		return fmt.Errorf("%w: %w: migrate %s to version %d: %s; the version is not recorded: "+
			"restore the objects usersync made (see the package README's schema), or give usersync a table of its own (sqlstore.Config.Table)",
			usersync.ErrInvalid, ErrSchemaMismatch, s.table, m.version, strings.Join(problems, "; "))
	}
	return nil
}

// describeIndex describes an index for an error: "unique (a,b)".
func describeIndex(columns string, unique bool) string {
	if unique {
		return "unique (" + columns + ")"
	}
	return "(" + columns + ")"
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
