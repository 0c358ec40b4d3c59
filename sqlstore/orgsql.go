package sqlstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// The columns of the tables of organizations and memberships (migration
// 6, PostgreSQL 7). A read returns orgColumns (scanOrg) or memberColumns
// (scanMember); an INSERT writes the key columns before them (orgArgs,
// memberArgs).
var (
	orgKeys       = []string{"org_key"}
	orgColumns    = []string{"issuer", "org_id", "name", "slug", "image_url", "metadata", "version", "created_at", "updated_at", "deleted_at", "change_count"}
	memberKeys    = []string{"org_key", "user_key"}
	memberColumns = []string{"issuer", "org_id", "user_subject", "membership_id", "role", "permissions", "metadata", "version",
		"created_at", "updated_at", "deleted_at", "change_count"}
	orgInsertColumns    = append(append([]string(nil), orgKeys...), orgColumns...)
	memberInsertColumns = append(append([]string(nil), memberKeys...), memberColumns...)
)

// orgChunk is how many rows one statement of a batch reads or writes:
// well under every dialect's limit of bind parameters.
const orgChunk = 250

// orgStatements are the statements of organizations and memberships, for
// one table and dialect. Those of a list of rows are completed per call
// (the methods below), from prefixes here.
type orgStatements struct {
	d *dialect
	// The reads (orgs.go, memberships.go).
	getOrg, listOrgs, member, listMembers, userMembers string
	// The memberships that the delete of their organization or user ends.
	endOrgMembers, endUserMembers string
	// The tables, quoted and qualified.
	orgs, members, users string
	// The column lists of reads.
	orgCols, memberCols string
}

// newOrgStatements returns the statements of table t in dialect d.
func newOrgStatements(d *dialect, t tableName) orgStatements {
	p := d.placeholder
	q := orgStatements{
		d:          d,
		orgs:       t.qualified(d, "organizations"),
		members:    t.qualified(d, "memberships"),
		users:      t.quoted(d),
		orgCols:    strings.Join(orgColumns, ", "),
		memberCols: strings.Join(memberColumns, ", "),
	}
	prefixed := func(prefix string, cols []string) string {
		out := make([]string, len(cols))
		for i, c := range cols {
			out[i] = prefix + c
		}
		return strings.Join(out, ", ")
	}
	q.getOrg = fmt.Sprintf("SELECT %s FROM %s WHERE org_key = %s", q.orgCols, q.orgs, p(1))
	// The issuer's keys are those from "issuer|" to "issuer}" ("}" follows
	// "|"); the issuer is compared too, as an issuer may hold a "|".
	q.listOrgs = fmt.Sprintf("SELECT %s FROM %s WHERE org_key > %s AND org_key < %s AND issuer = %s AND deleted_at IS NULL ORDER BY org_key LIMIT %s",
		q.orgCols, q.orgs, p(1), p(2), p(3), p(4))
	// Member is the request path: the organization and the membership by
	// their primary keys, in one statement. The issuer, IDs and subject
	// are the caller's, and not read.
	q.member = fmt.Sprintf("SELECT o.name, o.slug, o.image_url, o.metadata, o.version, o.created_at, o.updated_at, o.deleted_at, "+
		"m.membership_id, m.role, m.permissions, m.metadata, m.version, m.created_at, m.updated_at, m.deleted_at "+
		"FROM %s o LEFT JOIN %s m ON m.org_key = o.org_key AND m.user_key = %s WHERE o.org_key = %s", q.orgs, q.members, p(1), p(2))
	q.listMembers = fmt.Sprintf("SELECT %s FROM %s WHERE org_key = %s AND user_key > %s AND deleted_at IS NULL ORDER BY user_key LIMIT %s",
		q.memberCols, q.members, p(1), p(2), p(3))
	q.userMembers = fmt.Sprintf("SELECT %s, %s FROM %s m JOIN %s o ON o.org_key = m.org_key "+
		"WHERE m.user_key = %s AND m.org_key > %s AND m.deleted_at IS NULL AND o.deleted_at IS NULL ORDER BY m.org_key LIMIT %s",
		prefixed("o.", orgColumns), prefixed("m.", memberColumns), q.members, q.orgs, p(1), p(2), p(3))
	// A membership a delete ends becomes its tombstone, as DeleteMembership
	// makes one, and a Deleted change of the feed (the trigger).
	end := fmt.Sprintf("UPDATE %s SET role = '', permissions = '[]', metadata = NULL, updated_at = %s, deleted_at = %s, change_count = change_count + 1 WHERE ",
		q.members, p(1), p(2))
	q.endOrgMembers = end + fmt.Sprintf("org_key = %s AND deleted_at IS NULL", p(3))
	q.endUserMembers = end + fmt.Sprintf("user_key = %s AND deleted_at IS NULL", p(3))
	return q
}

// readOrgs returns the read of n organizations by key, locked for a
// write.
func (q *orgStatements) readOrgs(n int) string {
	return fmt.Sprintf("SELECT org_key, %s FROM %s WHERE org_key IN (%s)%s", q.orgCols, q.orgs, inList(q.d, n), q.d.orgs.forUpdate)
}

// readMembers returns the read of n memberships by key (org_key,
// user_key), locked for a write. A disjunction of the primary key's
// equalities, which every dialect reads by the index (row values in IN
// lists are not so everywhere).
func (q *orgStatements) readMembers(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT org_key, user_key, %s FROM %s WHERE ", q.memberCols, q.members)
	for i := range n {
		if i > 0 {
			b.WriteString(" OR ")
		}
		fmt.Fprintf(&b, "(org_key = %s AND user_key = %s)", q.d.placeholder(2*i+1), q.d.placeholder(2*i+2))
	}
	b.WriteString(q.d.orgs.forUpdate)
	return b.String()
}

// orgStates returns the read of n organizations' tombstones by key, and
// userStates that of n users' by token identifier, for the checks of
// membership writes.
func (q *orgStatements) orgStates(n int) string {
	return fmt.Sprintf("SELECT org_key, deleted_at FROM %s WHERE org_key IN (%s)%s", q.orgs, inList(q.d, n), q.d.orgs.forShare)
}

func (q *orgStatements) userStates(n int) string {
	return fmt.Sprintf("SELECT token_identifier, deleted_at FROM %s WHERE token_identifier IN (%s)%s", q.users, inList(q.d, n), q.d.orgs.forShare)
}

// insertOrgs returns the INSERT of n organizations; replaceOrgs the same
// overwriting the stored ones. insertMembers and replaceMembers are the
// same for memberships.
func (q *orgStatements) insertOrgs(n int) string {
	return insertRows(q.d, q.orgs, orgInsertColumns, n)
}

func (q *orgStatements) replaceOrgs(n int) string {
	return q.insertOrgs(n) + " " + q.d.orgs.replace(orgKeys, orgInsertColumns)
}

func (q *orgStatements) insertMembers(n int) string {
	return insertRows(q.d, q.members, memberInsertColumns, n)
}

func (q *orgStatements) replaceMembers(n int) string {
	return q.insertMembers(n) + " " + q.d.orgs.replace(memberKeys, memberInsertColumns)
}

// insertRows returns the INSERT of n rows of cols into table.
func insertRows(d *dialect, table string, cols []string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
	for r := range n {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.placeholder(r*len(cols) + c + 1))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// orgRow is an organization as stored, with its change_count.
type orgRow struct {
	o     orgs.Organization
	count int64
}

// memberRow is a membership as stored, with its change_count.
type memberRow struct {
	m     orgs.Membership
	count int64
}

// scanner is a row or rows.
type scanner interface{ Scan(...any) error }

// orgDest returns the scan destinations of orgColumns into r, the
// version into *version.
func orgDest(r *orgRow, version *int64) []any {
	o := &r.o
	return []any{&o.Issuer, &o.ID, &o.Name, &o.Slug, &o.ImageURL, (*jsonColumn)(&o.Metadata), version,
		(*timeColumn)(&o.CreatedAt), (*timeColumn)(&o.UpdatedAt), (*timeColumn)(&o.DeletedAt), &r.count}
}

// memberDest returns the scan destinations of memberColumns into r, the
// version into *version.
func memberDest(r *memberRow, version *int64) []any {
	m := &r.m
	return []any{&m.Issuer, &m.OrganizationID, &m.UserSubject, &m.ID, &m.Role, (*permissionsColumn)(&m.Permissions),
		(*jsonColumn)(&m.Metadata), version, (*timeColumn)(&m.CreatedAt), (*timeColumn)(&m.UpdatedAt), (*timeColumn)(&m.DeletedAt), &r.count}
}

// scanOrg reads orgColumns after the leading destinations lead.
func scanOrg(row scanner, lead ...any) (orgRow, error) {
	var r orgRow
	var version int64
	if err := row.Scan(append(lead, orgDest(&r, &version)...)...); err != nil {
		return orgRow{}, err
	}
	r.o.Version = usersync.Version(version)
	return r, nil
}

// scanMember reads memberColumns after the leading destinations lead.
func scanMember(row scanner, lead ...any) (memberRow, error) {
	var r memberRow
	var version int64
	if err := row.Scan(append(lead, memberDest(&r, &version)...)...); err != nil {
		return memberRow{}, err
	}
	r.m.Version = usersync.Version(version)
	return r, nil
}

// orgArgs appends the INSERT arguments of r (orgInsertColumns) to args.
func orgArgs(args []any, d *dialect, r *orgRow) []any {
	o := &r.o
	return append(args, orgs.Key(o.Issuer, o.ID), o.Issuer, o.ID, o.Name, o.Slug, o.ImageURL, metadataArg(o.Metadata), int64(o.Version),
		d.timeArg(o.CreatedAt), d.timeArg(o.UpdatedAt), d.timeArg(o.DeletedAt), r.count)
}

// memberArgs appends the INSERT arguments of r (memberInsertColumns) to
// args.
func memberArgs(args []any, d *dialect, r *memberRow) []any {
	m := &r.m
	return append(args, orgs.Key(m.Issuer, m.OrganizationID), usersync.TokenIdentifier(m.Issuer, m.UserSubject),
		m.Issuer, m.OrganizationID, m.UserSubject, m.ID, m.Role, permissionsArg(m.Permissions), metadataArg(m.Metadata), int64(m.Version),
		d.timeArg(m.CreatedAt), d.timeArg(m.UpdatedAt), d.timeArg(m.DeletedAt), r.count)
}

// metadataArg is the argument of a metadata column: NULL for none.
func metadataArg(m json.RawMessage) any {
	if m == nil {
		return nil
	}
	return string(m)
}

// permissionsArg is the permissions column's JSON array.
func permissionsArg(p []string) string {
	if len(p) == 0 {
		return "[]"
	}
	b, err := json.Marshal(p)
	if err != nil { // strings always marshal
		return "[]"
	}
	return string(b)
}

// permissionsColumn scans the JSON array of the permissions column (NULL
// or [] for none, which reads nil).
type permissionsColumn []string

func (p *permissionsColumn) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*p = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("permissions column holds a %T", src)
	}
	if len(b) == 2 && b[0] == '[' && b[1] == ']' {
		*p = nil
		return nil
	}
	if out, ok := plainStrings(b); ok {
		*p = out
		return nil
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("permissions column: %w", err)
	}
	if len(out) == 0 {
		out = nil
	}
	*p = out
	return nil
}

// plainStrings parses a JSON array of strings without escapes, as
// permissionsArg writes the usual permissions ("org:sys_memberships:read"),
// without the reflection of encoding/json: Member reads one on every
// request. It reports false for any other text, which json.Unmarshal then
// reads.
func plainStrings(b []byte) ([]string, bool) {
	if len(b) < 4 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	var out []string
	for rest := b[1 : len(b)-1]; ; {
		if len(rest) < 2 || rest[0] != '"' {
			return nil, false
		}
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if c := rest[end]; c == '\\' || c < 0x20 {
				return nil, false
			}
			end++
		}
		if end == len(rest) {
			return nil, false
		}
		out = append(out, string(rest[1:end]))
		rest = rest[end+1:]
		if len(rest) == 0 {
			return out, true
		}
		if rest[0] != ',' {
			return nil, false
		}
		rest = rest[1:]
	}
}

// textColumn scans a text column that a LEFT JOIN may leave NULL, which
// reads "".
type textColumn string

func (t *textColumn) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*t = ""
	case string:
		*t = textColumn(v)
	case []byte:
		*t = textColumn(v)
	default:
		return fmt.Errorf("text column holds a %T", src)
	}
	return nil
}

// intColumn scans an integer column that a LEFT JOIN may leave NULL,
// which reads 0.
type intColumn int64

func (n *intColumn) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*n = 0
	case int64:
		*n = intColumn(v)
	case []byte: // MySQL's text protocol
		return n.parse(string(v))
	case string:
		return n.parse(v)
	default:
		return fmt.Errorf("integer column holds a %T", src)
	}
	return nil
}

func (n *intColumn) parse(s string) error {
	var v int64
	if _, err := fmt.Sscan(s, &v); err != nil {
		return fmt.Errorf("integer column: %w", err)
	}
	*n = intColumn(v)
	return nil
}

// trunc truncates t to the millisecond, the precision every dialect
// stores (SQLite's Unix milliseconds, MySQL's DATETIME(3)): a write
// returns the times a read of it returns, and compares them alike.
func trunc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Millisecond)
}
