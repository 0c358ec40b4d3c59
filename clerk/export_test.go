package clerk

import (
	"context"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// SetSleep replaces how l waits between attempts, so tests record the
// waits instead of sleeping them.
func SetSleep(l *UserList, sleep func(context.Context, time.Duration) error) { l.api.sleep = sleep }

// DecodePage decodes a page of GET /users as UserList.Page does.
func (p *Provider) DecodePage(body []byte) ([]usersync.Write, error) { return p.decodePage(body) }

// OnCompletionEnded sets a function called after each completion of a user
// by a's completer has ended, whatever its result, so that tests wait for
// the background work instead of sleeping.
func OnCompletionEnded(a *App, f func()) {
	if a.completer != nil {
		a.completer.ended = f
	}
}

// WaitRunning waits until a's Run has started completing users, so that
// the first requests of a test wait for their completions.
func WaitRunning(a *App) {
	if a.completer != nil {
		<-a.completer.up
	}
}

// DecodeOrganizations decodes a page of GET /organizations as
// OrganizationList.Organizations does.
func DecodeOrganizations(issuer string, body []byte) ([]orgs.Organization, error) {
	return decodeOrganizations(issuer, body)
}

// DecodeMemberships decodes a page of GET /organizations/{orgID}/memberships
// as OrganizationList.Memberships does.
func DecodeMemberships(issuer, orgID string, body []byte) ([]orgs.Membership, error) {
	return decodeMemberships(issuer, orgID, "", body)
}
