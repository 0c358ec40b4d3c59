package reconcile

import (
	"context"

	"github.com/usersync/usersync"
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
