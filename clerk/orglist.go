package clerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
)

// OrganizationList is the instance's organizations and their memberships
// in the Backend API (GET /organizations, /organizations/{id} and
// /organizations/{id}/memberships), as writes versioned by each one's
// updated_at: the reconcile.OrganizationSource of a reconcile. Its
// requests are those of the Provider's UserList, which it shares: the
// same retries, the same pause of every request after a 429 (Clerk's rate
// limit is the instance's), the same check, before its first request,
// that the secret key is the issuer's instance's. Make one with
// Provider.OrganizationList.
type OrganizationList struct {
	p   *Provider
	api *backend
}

var _ reconcile.OrganizationSource = (*OrganizationList)(nil)

// OrganizationList returns the instance's organization list. It needs
// Config.SecretKey.
func (p *Provider) OrganizationList() (*OrganizationList, error) {
	api, err := p.backend()
	if err != nil {
		return nil, err
	}
	return &OrganizationList{p: p, api: api}, nil
}

// Issuer returns the instance's issuer: the organizations of the list are
// its.
func (l *OrganizationList) Issuer() string { return l.p.cfg.Issuer }

// maxPage is the largest page of the Backend API's lists.
const maxPage = 500

func checkPage(offset, limit int) error {
	if limit < 1 || limit > maxPage || offset < 0 {
		return fmt.Errorf("%w: a page is 1 to %d items from an offset of 0 or more", usersync.ErrInvalid, maxPage)
	}
	return nil
}

// Organizations returns up to limit (1 to 500) organizations from offset,
// oldest first (order_by=+created_at: organizations created while a
// reconcile pages come last), mapped by MapOrganization.
func (l *OrganizationList) Organizations(ctx context.Context, offset, limit int) ([]orgs.Organization, error) {
	if err := checkPage(offset, limit); err != nil {
		return nil, err
	}
	if err := l.api.checkInstance(ctx); err != nil {
		return nil, err
	}
	body, err := l.api.get(ctx, fmt.Sprintf("/organizations?limit=%d&offset=%d&order_by=%%2Bcreated_at", limit, offset))
	if err != nil {
		return nil, err
	}
	return decodeOrganizations(l.p.cfg.Issuer, body)
}

// Memberships returns up to limit (1 to 500) memberships of the
// organization orgID from offset, oldest first, mapped by MapMembership.
// An organization the instance does not have (any longer) fails with an
// error wrapping orgs.ErrNotFound.
func (l *OrganizationList) Memberships(ctx context.Context, orgID string, offset, limit int) ([]orgs.Membership, error) {
	if err := checkPage(offset, limit); err != nil {
		return nil, err
	}
	if orgID == "" {
		return nil, fmt.Errorf("%w: the memberships of an organization without an ID", usersync.ErrInvalid)
	}
	if err := l.api.checkInstance(ctx); err != nil {
		return nil, err
	}
	body, err := l.api.get(ctx, fmt.Sprintf("/organizations/%s/memberships?limit=%d&offset=%d&order_by=%%2Bcreated_at", url.PathEscape(orgID), limit, offset))
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("%w: the Backend API has no organization %.128q", orgs.ErrNotFound, orgID)
	}
	if err != nil {
		return nil, err
	}
	return decodeMemberships(l.p.cfg.Issuer, orgID, "", body)
}

// LookupOrganization returns the organization with the given Clerk ID, or
// nil if the instance has no such organization (any longer).
func (l *OrganizationList) LookupOrganization(ctx context.Context, id string) (*orgs.Organization, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: a lookup of an organization without an ID", usersync.ErrInvalid)
	}
	if err := l.api.checkInstance(ctx); err != nil {
		return nil, err
	}
	var o Organization
	err := l.api.getJSON(ctx, "/organizations/"+url.PathEscape(id), &o)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The endpoint also takes a slug: an answer of another ID is not the
	// organization asked for.
	if o.ID != id {
		return nil, fmt.Errorf("%w: /organizations/{id} answered another organization", ErrAPI)
	}
	if err := checkOrganization(&o); err != nil {
		return nil, fmt.Errorf("%w: /organizations/{id} %w", ErrAPI, err)
	}
	org := MapOrganization(l.p.cfg.Issuer, &o)
	return &org, nil
}

// LookupMembership returns the membership of the user userSubject in the
// organization orgID, or nil if the instance has none (or no such
// organization), from the organization's memberships filtered by user_id.
func (l *OrganizationList) LookupMembership(ctx context.Context, orgID, userSubject string) (*orgs.Membership, error) {
	if orgID == "" || userSubject == "" {
		// An empty user_id would filter nothing: the whole list.
		return nil, fmt.Errorf("%w: a lookup of a membership without an organization or user ID", usersync.ErrInvalid)
	}
	if err := l.api.checkInstance(ctx); err != nil {
		return nil, err
	}
	body, err := l.api.get(ctx, fmt.Sprintf("/organizations/%s/memberships?limit=10&offset=0&user_id=%s",
		url.PathEscape(orgID), url.QueryEscape(userSubject)))
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ms, err := decodeMemberships(l.p.cfg.Issuer, orgID, userSubject, body)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	return &ms[0], nil
}

// list is the answer of the Backend API's organization lists.
type list[T any] struct {
	Data       []T  `json:"data"`
	TotalCount *int `json:"total_count"`
}

// decodeOrganizations decodes a page of GET /organizations.
func decodeOrganizations(issuer string, body []byte) ([]orgs.Organization, error) {
	var page list[Organization]
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("%w: /organizations answered malformed JSON: %w", ErrAPI, jsonError(err))
	}
	if page.Data == nil {
		return nil, fmt.Errorf("%w: /organizations answered no data", ErrAPI)
	}
	out := make([]orgs.Organization, 0, len(page.Data))
	for i := range page.Data {
		if err := checkOrganization(&page.Data[i]); err != nil {
			return nil, fmt.Errorf("%w: /organizations answered %w", ErrAPI, err)
		}
		out = append(out, MapOrganization(issuer, &page.Data[i]))
	}
	return out, nil
}

// checkOrganization checks an organization of the Backend API.
func checkOrganization(o *Organization) error {
	switch {
	case o.ID == "":
		return errors.New("an organization without an id")
	case o.Deleted:
		return errors.New("a deleted organization")
	case o.UpdatedAt <= 0:
		return errors.New("an organization without an updated_at")
	}
	return nil
}

// decodeMemberships decodes a page of GET
// /organizations/{orgID}/memberships; with user, only the memberships of
// that user are kept (those a user_id filter asked for).
func decodeMemberships(issuer, orgID, user string, body []byte) ([]orgs.Membership, error) {
	var page list[OrganizationMembership]
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("%w: /organizations/{id}/memberships answered malformed JSON: %w", ErrAPI, jsonError(err))
	}
	if page.Data == nil {
		return nil, fmt.Errorf("%w: /organizations/{id}/memberships answered no data", ErrAPI)
	}
	out := make([]orgs.Membership, 0, len(page.Data))
	for i := range page.Data {
		m := &page.Data[i]
		switch {
		case m.ID == "" || m.PublicUserData.UserID == "" || m.UpdatedAt <= 0:
			return nil, fmt.Errorf("%w: /organizations/{id}/memberships answered a membership without an id, a public_user_data.user_id or an updated_at", ErrAPI)
		case m.Organization.ID == "":
			m.Organization.ID = orgID
		case m.Organization.ID != orgID:
			return nil, fmt.Errorf("%w: /organizations/{id}/memberships answered a membership of another organization", ErrAPI)
		}
		if user != "" && m.PublicUserData.UserID != user {
			continue
		}
		out = append(out, MapMembership(issuer, m))
	}
	return out, nil
}
