package reconcile

import (
	"context"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
)

// Source is a provider's list of its users, as clerk.UserList serves it.
type Source interface {
	// Issuer is the issuer of the listed users: the reconcile heals the
	// stored users of that issuer only.
	Issuer() string
	// Count returns how many users the provider has, for progress.
	Count(ctx context.Context) (int, error)
	// Page returns up to limit users from offset, as versioned writes of
	// the issuer, oldest first: in an order where users created while the
	// reconcile pages come after the others. An offset past the end
	// answers an empty page.
	Page(ctx context.Context, offset, limit int) ([]usersync.Write, error)
	// Lookup returns the write of the user with the given subject, or nil
	// if the provider has no such user.
	Lookup(ctx context.Context, subject string) (*usersync.Write, error)
}

// OrganizationSource is a provider's list of its organizations and their
// memberships, as clerk.OrganizationList serves it. Like Source, its lists
// page oldest first (what is created while the reconcile pages comes
// last) and answer an offset past the end with an empty page. Its writes
// carry the provider's data and version (its updated_at), with UpdatedAt
// left zero for the Syncer's clock. A reconcile calls its methods from
// several goroutines at once (OrganizationConfig.Concurrency).
type OrganizationSource interface {
	// Issuer is the issuer of the listed organizations.
	Issuer() string
	// Organizations returns up to limit organizations from offset.
	Organizations(ctx context.Context, offset, limit int) ([]orgs.Organization, error)
	// Memberships returns up to limit memberships of the organization
	// orgID from offset. An organization the provider no longer has
	// answers an error wrapping orgs.ErrNotFound.
	Memberships(ctx context.Context, orgID string, offset, limit int) ([]orgs.Membership, error)
	// LookupOrganization returns the organization, or nil if the provider
	// has none: the check before a delete.
	LookupOrganization(ctx context.Context, id string) (*orgs.Organization, error)
	// LookupMembership returns the membership of userSubject in the
	// organization orgID, or nil if the provider has none.
	LookupMembership(ctx context.Context, orgID, userSubject string) (*orgs.Membership, error)
}
