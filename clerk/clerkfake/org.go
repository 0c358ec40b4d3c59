package clerkfake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usersync/usersync/clerk"
)

// Organization describes a Clerk organization, listed by an Instance or
// sent in its webhooks.
type Organization struct {
	ID                    string // "org_…": letters, digits, "_" and "-"
	Name                  string
	Slug                  string
	ImageURL              string
	PublicMetadata        json.RawMessage
	CreatedBy             string // a user ID, or ""
	MaxAllowedMemberships int64
	// CreatedAt is when Clerk created the organization; zero means
	// UpdatedAt (or, for one the instance lists, its own).
	CreatedAt time.Time
	// UpdatedAt is the version; zero means now (later than the listed
	// organization's, if any).
	UpdatedAt time.Time
}

// Clerk returns o as Clerk's organization object, the data of its
// organization.created and organization.updated events. Zero times are
// left zero.
func (o Organization) Clerk() clerk.Organization {
	d := clerk.Organization{
		Object: "organization", ID: o.ID, Name: o.Name, Slug: o.Slug, HasImage: o.ImageURL != "",
		MaxAllowedMemberships: o.MaxAllowedMemberships, PublicMetadata: o.PublicMetadata,
		PrivateMetadata: json.RawMessage(`{}`), CreatedBy: o.CreatedBy,
	}
	if o.ImageURL != "" {
		d.ImageURL = Str(o.ImageURL)
	}
	if d.PublicMetadata == nil {
		d.PublicMetadata = json.RawMessage(`{}`)
	}
	if !o.UpdatedAt.IsZero() {
		d.UpdatedAt = o.UpdatedAt.UnixMilli()
		d.CreatedAt = d.UpdatedAt
	}
	if !o.CreatedAt.IsZero() {
		d.CreatedAt = o.CreatedAt.UnixMilli()
	}
	return d
}

// Membership describes a user's membership of an organization, listed by
// an Instance or sent in its webhooks.
type Membership struct {
	// ID is the membership's ID ("orgmem_…"); "" is the ID of the user's
	// listed membership of the organization, or a new one.
	ID             string
	OrganizationID string
	UserID         string
	// Role is the member's role; "" means "org:member".
	Role           string
	Permissions    []string
	PublicMetadata json.RawMessage
	// CreatedAt is when the user joined; zero means that of the listed
	// membership of the same ID, or UpdatedAt.
	CreatedAt time.Time
	// UpdatedAt is the version; zero means now (later than the listed
	// membership's, if any).
	UpdatedAt time.Time
}

// listedOrg is an organization as the Backend API lists it: its JSON,
// rendered once, and what the list is sorted by.
type listedOrg struct {
	id, slug         string
	created, updated int64 // ms since the epoch
	json             []byte
}

// member is a membership as the instance keeps it; its JSON is rendered
// when served, with its organization as it is then.
type member struct {
	id, userID       string
	role             string
	permissions      []string
	metadata         json.RawMessage
	created, updated int64 // ms since the epoch
}

// orgState is what the instance keeps of its organizations. The caller of
// its methods holds the Instance's mu.
type orgState struct {
	orgs    []listedOrg         // by (created, id)
	created map[string]int64    // the created of each organization, to find it
	members map[string][]member // by organization ID: by (created, id)
}

func (s *orgState) find(id string) (int, bool) {
	created, ok := s.created[id]
	if !ok {
		return 0, false
	}
	return slices.BinarySearchFunc(s.orgs, listedOrg{id: id, created: created}, compareOrgs)
}

func compareOrgs(x, y listedOrg) int {
	return cmp.Or(cmp.Compare(x.created, y.created), strings.Compare(x.id, y.id))
}

func compareMembers(x, y member) int {
	return cmp.Or(cmp.Compare(x.created, y.created), strings.Compare(x.id, y.id))
}

// member returns the index of the user's membership of the organization.
func (s *orgState) member(orgID, userID string) (int, bool) {
	k := slices.IndexFunc(s.members[orgID], func(m member) bool { return m.userID == userID })
	return k, k >= 0
}

// PutOrganization adds organizations, or replaces those with the same ID
// (keeping their created_at, as Clerk never changes it), without sending
// a webhook: as a change whose webhook was missed. Each needs an ID of
// letters, digits, "_" and "-"; a zero UpdatedAt is now. An invalid
// organization changes nothing.
func (i *Instance) PutOrganization(os ...Organization) error {
	for _, o := range os {
		if o.ID == "" || !validID(o.ID) {
			return fmt.Errorf("clerkfake: organization ID %.64q is not letters, digits, _ and -", o.ID)
		}
	}
	for _, o := range os {
		i.putOrg(o)
	}
	return nil
}

// putOrg lists o, filling in its times, and returns it as listed.
func (i *Instance) putOrg(o Organization) listedOrg {
	now := i.now().UnixMilli()
	i.mu.Lock()
	defer i.mu.Unlock()
	s := &i.orgState
	k, exists := s.find(o.ID)
	d := o.Clerk()
	if o.UpdatedAt.IsZero() {
		d.UpdatedAt = now
		if exists {
			d.UpdatedAt = max(now, s.orgs[k].updated+1)
		}
	}
	switch {
	case exists:
		d.CreatedAt = s.orgs[k].created
	case o.CreatedAt.IsZero():
		d.CreatedAt = d.UpdatedAt
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic(err) // cannot happen: every field marshals
	}
	l := listedOrg{id: o.ID, slug: o.Slug, created: d.CreatedAt, updated: d.UpdatedAt, json: b}
	if exists {
		s.orgs[k] = l
		return l
	}
	if s.created == nil {
		s.created, s.members = map[string]int64{}, map[string][]member{}
	}
	k, _ = slices.BinarySearchFunc(s.orgs, l, compareOrgs)
	s.orgs = slices.Insert(s.orgs, k, l)
	s.created[o.ID] = l.created
	return l
}

// RemoveOrganization deletes the organizations with the given IDs and
// their memberships, as deleting them in Clerk does, without sending a
// webhook. Unknown IDs are ignored.
func (i *Instance) RemoveOrganization(ids ...string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, id := range ids {
		i.removeOrgLocked(id)
	}
}

func (i *Instance) removeOrgLocked(id string) (listedOrg, bool) {
	s := &i.orgState
	k, ok := s.find(id)
	if !ok {
		return listedOrg{}, false
	}
	o := s.orgs[k]
	s.orgs = slices.Delete(s.orgs, k, k+1)
	delete(s.created, id)
	delete(s.members, id)
	return o, true
}

// Organizations returns how many organizations the instance lists.
func (i *Instance) Organizations() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.orgState.orgs)
}

// PutMembership adds memberships, or replaces the user's membership of
// the organization, without sending a webhook: as a change whose webhook
// was missed. The organization must be listed; the user need not be. A
// membership of another ID than the user's listed one replaces it as a
// new membership (the user left and joined again).
func (i *Instance) PutMembership(ms ...Membership) error {
	for _, m := range ms {
		if _, err := i.putMember(m); err != nil {
			return err
		}
	}
	return nil
}

// putMember lists m, filling in what is missing, and returns it as
// listed.
func (i *Instance) putMember(m Membership) (member, error) {
	switch {
	case m.OrganizationID == "" || !validID(m.OrganizationID):
		return member{}, errors.New("clerkfake: a membership needs its organization's ID")
	case m.UserID == "" || !validID(m.UserID):
		return member{}, errors.New("clerkfake: a membership needs its user's ID (letters, digits, _ and -)")
	case m.ID != "" && !validID(m.ID):
		return member{}, errors.New("clerkfake: a membership ID is letters, digits, _ and -")
	}
	now := i.now().UnixMilli()
	i.mu.Lock()
	defer i.mu.Unlock()
	s := &i.orgState
	if _, ok := s.find(m.OrganizationID); !ok {
		return member{}, fmt.Errorf("clerkfake: no organization %.64q is listed", m.OrganizationID)
	}
	k, exists := s.member(m.OrganizationID, m.UserID)
	var old member
	if exists {
		old = s.members[m.OrganizationID][k]
	}
	same := exists && (m.ID == "" || m.ID == old.id)
	mem := newMember(m)
	switch {
	case same:
		mem.id = old.id
	case mem.id == "":
		mem.id = "orgmem_" + rand.Text()
	}
	mem.updated = now
	if same {
		mem.updated = max(now, old.updated+1)
	}
	if !m.UpdatedAt.IsZero() {
		mem.updated = m.UpdatedAt.UnixMilli()
	}
	switch {
	case same:
		mem.created = old.created
	case !m.CreatedAt.IsZero():
		mem.created = m.CreatedAt.UnixMilli()
	default:
		mem.created = mem.updated
	}
	list := s.members[m.OrganizationID]
	if exists {
		list = slices.Delete(list, k, k+1)
	}
	k, _ = slices.BinarySearchFunc(list, mem, compareMembers)
	s.members[m.OrganizationID] = slices.Insert(list, k, mem)
	return mem, nil
}

// newMember returns m's listed membership but for its ID and times.
func newMember(m Membership) member {
	mem := member{id: m.ID, userID: m.UserID, role: cmp.Or(m.Role, "org:member"), permissions: slices.Clone(m.Permissions), metadata: m.PublicMetadata}
	if mem.permissions == nil {
		mem.permissions = []string{}
	}
	if len(mem.metadata) == 0 {
		mem.metadata = json.RawMessage(`{}`)
	}
	return mem
}

// RemoveMembership deletes the user's membership of the organization, as
// removing a member in Clerk does, without sending a webhook. An unknown
// one is ignored.
func (i *Instance) RemoveMembership(orgID, userID string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.removeMemberLocked(orgID, userID)
}

func (i *Instance) removeMemberLocked(orgID, userID string) (member, bool) {
	s := &i.orgState
	k, ok := s.member(orgID, userID)
	if !ok {
		return member{}, false
	}
	m := s.members[orgID][k]
	s.members[orgID] = slices.Delete(s.members[orgID], k, k+1)
	return m, true
}

// membershipJSONLocked renders a membership of the organization o as
// Clerk's membership object, its public_user_data from the listed user.
// The caller holds i.mu.
func (i *Instance) membershipJSONLocked(o listedOrg, m member) []byte {
	d := struct {
		Object          string          `json:"object"`
		ID              string          `json:"id"`
		Role            string          `json:"role"`
		Permissions     []string        `json:"permissions"`
		PublicMetadata  json.RawMessage `json:"public_metadata"`
		PrivateMetadata json.RawMessage `json:"private_metadata"`
		CreatedAt       int64           `json:"created_at"`
		UpdatedAt       int64           `json:"updated_at"`
		Organization    json.RawMessage `json:"organization"`
		PublicUserData  publicUserData  `json:"public_user_data"`
	}{
		"organization_membership", m.id, m.role, m.permissions, m.metadata, json.RawMessage(`{}`),
		m.created, m.updated, o.json, i.publicUserDataLocked(m.userID),
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic(err) // cannot happen: every field marshals
	}
	return b
}

type publicUserData struct {
	UserID     string  `json:"user_id"`
	Identifier string  `json:"identifier"`
	FirstName  *string `json:"first_name"`
	LastName   *string `json:"last_name"`
	ImageURL   string  `json:"image_url"`
	HasImage   bool    `json:"has_image"`
}

// publicUserDataLocked returns the public data of the user, from the
// listed user if there is one. The caller holds i.mu.
func (i *Instance) publicUserDataLocked(id string) publicUserData {
	p := publicUserData{UserID: id}
	k, ok := i.find(id)
	if !ok {
		return p
	}
	var u clerk.User
	if json.Unmarshal(i.users[k].json, &u) != nil {
		return p
	}
	p.FirstName, p.LastName, p.ImageURL, p.HasImage = u.FirstName, u.LastName, u.ImageURL, u.ImageURL != ""
	primary := func(id *string) string {
		for _, e := range u.EmailAddresses {
			if id != nil && e.ID == *id {
				return e.EmailAddress
			}
		}
		return ""
	}
	p.Identifier = cmp.Or(primary(u.PrimaryEmailAddressID), deref(u.Username))
	return p
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// SendOrganization applies an organization.created, organization.updated
// or organization.deleted event of o to the instance (PutOrganization, or
// RemoveOrganization) and delivers it, signed, to Config.WebhookURL. It
// returns the status the webhook answered; without a webhook URL, 0 and
// nothing is sent. An organization.deleted event carries only the ID and
// slug, as Clerk's does; the memberships it ends send no event of their
// own (the store ends them with their organization).
func (i *Instance) SendOrganization(ctx context.Context, eventType string, o Organization) (int, error) {
	if o.ID == "" || !validID(o.ID) {
		return 0, errors.New("clerkfake: an organization event needs the organization's ID (letters, digits, _ and -)")
	}
	switch eventType {
	case "organization.created", "organization.updated":
		l := i.putOrg(o)
		return i.deliver(ctx, eventType, rawEvent(eventType, l.json, l.updated))
	case "organization.deleted":
		i.mu.Lock()
		old, ok := i.removeOrgLocked(o.ID)
		i.mu.Unlock()
		slug := o.Slug
		if ok && slug == "" {
			slug = old.slug
		}
		b, _ := json.Marshal(clerk.Organization{Object: "organization", ID: o.ID, Slug: slug, Deleted: true})
		return i.deliver(ctx, eventType, rawEvent(eventType, b, i.now().UnixMilli()))
	}
	return 0, fmt.Errorf("clerkfake: event type %.64q is not organization.created, organization.updated or organization.deleted", eventType)
}

// SendMembership applies an organizationMembership.created, .updated or
// .deleted event of m to the instance (PutMembership, or
// RemoveMembership) and delivers it, signed, to Config.WebhookURL, with
// the whole membership (its organization and the user's public data
// nested), as Clerk does for every one of the three. It returns the
// status the webhook answered; without a webhook URL, 0 and nothing is
// sent. A deleted event of a membership that is not listed sends m as
// given, at now.
func (i *Instance) SendMembership(ctx context.Context, eventType string, m Membership) (int, error) {
	switch eventType {
	case "organizationMembership.created", "organizationMembership.updated":
		mem, err := i.putMember(m)
		if err != nil {
			return 0, err
		}
		i.mu.Lock()
		k, _ := i.orgState.find(m.OrganizationID)
		b := i.membershipJSONLocked(i.orgState.orgs[k], mem)
		i.mu.Unlock()
		return i.deliver(ctx, eventType, rawEvent(eventType, b, mem.updated))
	case "organizationMembership.deleted":
		if m.OrganizationID == "" || !validID(m.OrganizationID) || m.UserID == "" || !validID(m.UserID) {
			return 0, errors.New("clerkfake: a membership event needs its organization's and its user's IDs")
		}
		now := i.now().UnixMilli()
		i.mu.Lock()
		mem, listed := i.removeMemberLocked(m.OrganizationID, m.UserID)
		if !listed {
			mem = newMember(m)
			mem.id, mem.created = cmp.Or(m.ID, "orgmem_"+rand.Text()), now
			if !m.CreatedAt.IsZero() {
				mem.created = m.CreatedAt.UnixMilli()
			}
		}
		mem.updated = max(now, mem.updated+1)
		org := listedOrg{json: []byte(`{"object":"organization","id":` + strconv.Quote(m.OrganizationID) + `}`)}
		if k, ok := i.orgState.find(m.OrganizationID); ok {
			org = i.orgState.orgs[k]
		}
		b := i.membershipJSONLocked(org, mem)
		i.mu.Unlock()
		return i.deliver(ctx, eventType, rawEvent(eventType, b, mem.updated))
	}
	return 0, fmt.Errorf("clerkfake: event type %.64q is not organizationMembership.created, .updated or .deleted", eventType)
}

// OrganizationClaims returns the claims of a v2 session token whose
// active organization is id, for Token: {"o": {"id", "slg", "rol"}}, the
// role without its "org:" prefix, as Clerk's tokens carry it.
func OrganizationClaims(id, slug, role string) map[string]any {
	return map[string]any{"o": map[string]any{"id": id, "slg": slug, "rol": strings.TrimPrefix(role, "org:")}}
}

// MemberToken returns a session token of the user sub, as Token does,
// whose active organization is orgID, with the slug of the listed
// organization and the role of the user's listed membership of it
// (OrganizationClaims). It fails if the user is not a listed member.
func (i *Instance) MemberToken(sub, orgID string, claims map[string]any) (string, error) {
	i.mu.Lock()
	var slug, role string
	k, ok := i.orgState.find(orgID)
	if ok {
		slug = i.orgState.orgs[k].slug
		var j int
		if j, ok = i.orgState.member(orgID, sub); ok {
			role = i.orgState.members[orgID][j].role
		}
	}
	i.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("clerkfake: the user is no listed member of the organization %.64q", orgID)
	}
	all := OrganizationClaims(orgID, slug, role)
	for name, v := range claims {
		all[name] = v
	}
	return i.Token(sub, all)
}

// serveOrgs serves the organizations endpoints of the Backend API, path
// without its "/v1" prefix.
func (i *Instance) serveOrgs(w http.ResponseWriter, r *http.Request, path string) {
	rest := strings.TrimPrefix(path, "/organizations")
	switch {
	case rest == "" || rest == "/":
		i.listOrgs(w, r)
	case strings.Count(rest, "/") == 1:
		i.getOrg(w, rest[1:])
	case strings.Count(rest, "/") == 2 && strings.HasSuffix(rest, "/memberships"):
		i.listMembers(w, r, strings.TrimSuffix(rest[1:], "/memberships"))
	default:
		clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
	}
}

// pageParams parses limit, offset and order_by, which may order by
// created_at only.
func pageParams(w http.ResponseWriter, q url.Values) (limit, offset int, desc, ok bool) {
	limit = 10
	var err error
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 500 {
			clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "limit must be 1 to 500")
			return 0, 0, false, false
		}
	}
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "offset must be 0 or more")
			return 0, 0, false, false
		}
	}
	order := cmp.Or(q.Get("order_by"), "-created_at")
	if strings.TrimLeft(order, "+-") != "created_at" {
		clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "order_by: only created_at is faked")
		return 0, 0, false, false
	}
	return limit, offset, strings.HasPrefix(order, "-"), true
}

// writeList answers {"data": [items[offset:offset+limit]], "total_count":
// len(items)}, in reverse order if desc.
func writeList(w http.ResponseWriter, items [][]byte, limit, offset int, desc bool) {
	if desc {
		slices.Reverse(items)
	}
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	for k := offset; k < min(offset+limit, len(items)); k++ {
		if k > offset {
			b.WriteByte(',')
		}
		b.Write(items[k])
	}
	b.WriteString(`],"total_count":` + strconv.Itoa(len(items)) + `}`)
	writeJSON(w, b.Bytes())
}

// listOrgs serves GET /v1/organizations.
func (i *Instance) listOrgs(w http.ResponseWriter, r *http.Request) {
	limit, offset, desc, ok := pageParams(w, r.URL.Query())
	if !ok {
		return
	}
	i.mu.Lock()
	items := make([][]byte, len(i.orgState.orgs))
	for k, o := range i.orgState.orgs {
		items[k] = o.json
	}
	i.mu.Unlock()
	writeList(w, items, limit, offset, desc)
}

// getOrg serves GET /v1/organizations/{id}, which takes an ID or a slug.
func (i *Instance) getOrg(w http.ResponseWriter, idOrSlug string) {
	i.mu.Lock()
	var b []byte
	if k, ok := i.orgState.find(idOrSlug); ok {
		b = i.orgState.orgs[k].json
	} else if k := slices.IndexFunc(i.orgState.orgs, func(o listedOrg) bool { return o.slug != "" && o.slug == idOrSlug }); k >= 0 {
		b = i.orgState.orgs[k].json
	}
	i.mu.Unlock()
	if b == nil {
		clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
		return
	}
	writeJSON(w, b)
}

// listMembers serves GET /v1/organizations/{id}/memberships, filtered by
// user_id (repeated) if given.
func (i *Instance) listMembers(w http.ResponseWriter, r *http.Request, orgID string) {
	q := r.URL.Query()
	limit, offset, desc, ok := pageParams(w, q)
	if !ok {
		return
	}
	users := q["user_id"]
	i.mu.Lock()
	k, ok := i.orgState.find(orgID)
	var items [][]byte
	if ok {
		o := i.orgState.orgs[k]
		for _, m := range i.orgState.members[orgID] {
			if len(users) == 0 || slices.Contains(users, m.userID) {
				items = append(items, i.membershipJSONLocked(o, m))
			}
		}
	}
	i.mu.Unlock()
	if !ok {
		clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
		return
	}
	writeList(w, items, limit, offset, desc)
}

// sendOrgJSON serves the organization and membership events of
// POST /fake/send: obj is a Clerk organization or membership object.
func (i *Instance) sendOrgJSON(ctx context.Context, eventType string, obj json.RawMessage) (int, error) {
	if strings.HasPrefix(eventType, "organization.") {
		var o clerk.Organization
		if err := json.Unmarshal(obj, &o); err != nil {
			return 0, errors.New("clerkfake: the organization is not a Clerk organization object")
		}
		return i.SendOrganization(ctx, eventType, Organization{
			ID: o.ID, Name: o.Name, Slug: o.Slug, ImageURL: deref(o.ImageURL), PublicMetadata: o.PublicMetadata,
			CreatedBy: o.CreatedBy, MaxAllowedMemberships: o.MaxAllowedMemberships, CreatedAt: millis(o.CreatedAt), UpdatedAt: millis(o.UpdatedAt),
		})
	}
	var m clerk.OrganizationMembership
	if err := json.Unmarshal(obj, &m); err != nil {
		return 0, errors.New("clerkfake: the membership is not a Clerk membership object")
	}
	return i.SendMembership(ctx, eventType, Membership{
		ID: m.ID, OrganizationID: m.Organization.ID, UserID: m.PublicUserData.UserID, Role: m.Role, Permissions: m.Permissions,
		PublicMetadata: m.PublicMetadata, CreatedAt: millis(m.CreatedAt), UpdatedAt: millis(m.UpdatedAt),
	})
}

func millis(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
