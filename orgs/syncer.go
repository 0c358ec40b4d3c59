package orgs

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry"
)

// Config configures a Syncer. Only Store is required; every other field
// has the default its comment gives.
type Config struct {
	// Store keeps the organizations and memberships: the store of the
	// app's usersync.Syncer, so that a user's deletion ends their
	// memberships.
	Store Store
	// OnChange, if set, is called after every write of the Syncer that
	// changed stored state, with Entity, OrganizationID (and, for a
	// membership, Subject) set, as usersync.Config.OnChange is for users.
	// The memberships a delete of their organization or user ends reach
	// the change feed, not OnChange.
	OnChange func(context.Context, usersync.Change)
	// ErrorHandler writes RequireMember's refusals: 404 for an
	// organization that is not stored or was deleted, 403 for a user who
	// is not a live member in a role the route admits, 401 without a user
	// in the context (RequireMember is not behind RequireUser), 500 when
	// the store fails. Default: the status text as text/plain.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Logger logs failed checks and, at debug level, changes. Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock that fills in a write's UpdatedAt. Default
	// time.Now.
	Now func() time.Time
}

// Syncer writes a provider's organizations and memberships to a Store
// (for the clerk webhooks and the reconcile) and admits requests to an
// organization's routes. It is safe for concurrent use.
type Syncer struct {
	cfg   Config
	store Store
	log   *slog.Logger
}

// New returns the Syncer of cfg; a nil Store is an error wrapping
// usersync.ErrInvalid.
func New(cfg Config) (*Syncer, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: orgs.Config needs a Store", usersync.ErrInvalid)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Syncer{cfg: cfg, store: cfg.Store, log: telemetry.Logger(cfg.Logger)}, nil
}

// Store returns the store the Syncer writes to, for reads it does not
// wrap.
func (s *Syncer) Store() Store { return s.store }

// maxFutureSkew is how far in the future of the clock a version may be:
// a version from further on would freeze the row.
const maxFutureSkew = 10 * time.Minute

// UpsertOrganization applies o under the write rules of the package doc,
// filling in its UpdatedAt from the clock unless set and its Issuer's
// canonical form. It fails with usersync.ErrInvalid for a malformed write
// or a version more than 10 minutes in the future, and with ErrDeleted for
// a deleted organization.
func (s *Syncer) UpsertOrganization(ctx context.Context, o Organization) (Organization, usersync.Outcome, error) {
	s.completeOrg(&o)
	if err := s.checkFuture(o.Version); err != nil {
		return Organization{}, usersync.Stale, err
	}
	got, outcome, err := s.store.UpsertOrganization(ctx, o)
	if err == nil {
		s.changed(ctx, outcome, usersync.EntityOrganization, got.ID, "", got.UpdatedAt)
	}
	return got, outcome, err
}

// UpsertOrganizations applies os in one call of the store, as
// UpsertOrganization applies each: for reconciles. A malformed write fails
// the batch with usersync.ErrInvalid before anything is written.
func (s *Syncer) UpsertOrganizations(ctx context.Context, os []Organization) ([]usersync.Outcome, error) {
	for i := range os {
		s.completeOrg(&os[i])
		if err := s.checkFuture(os[i].Version); err != nil {
			return nil, fmt.Errorf("organization %d: %w", i, err)
		}
	}
	outcomes, err := s.store.UpsertOrganizations(ctx, os)
	if err == nil {
		for i, o := range outcomes {
			s.changed(ctx, o, usersync.EntityOrganization, os[i].ID, "", os[i].UpdatedAt)
		}
	}
	return outcomes, err
}

// DeleteOrganization tombstones the organization and ends its
// memberships, even for one never seen, so that no later write brings it
// back. It reports Deleted, or Stale if it was already deleted.
func (s *Syncer) DeleteOrganization(ctx context.Context, issuer, id string) (Organization, usersync.Outcome, error) {
	got, outcome, err := s.store.DeleteOrganization(ctx, canonical(issuer), id, s.cfg.Now())
	if err == nil {
		s.changed(ctx, outcome, usersync.EntityOrganization, got.ID, "", got.UpdatedAt)
	}
	return got, outcome, err
}

// UpsertMembership applies m under the write rules of the package doc,
// as UpsertOrganization applies an organization. It fails with
// ErrDeleted when the membership, its organization or its user was
// deleted.
func (s *Syncer) UpsertMembership(ctx context.Context, m Membership) (Membership, usersync.Outcome, error) {
	s.completeMembership(&m)
	if err := s.checkFuture(m.Version); err != nil {
		return Membership{}, usersync.Stale, err
	}
	got, outcome, err := s.store.UpsertMembership(ctx, m)
	if err == nil {
		s.changed(ctx, outcome, usersync.EntityMembership, got.OrganizationID, got.UserSubject, got.UpdatedAt)
	}
	return got, outcome, err
}

// UpsertMemberships applies ms in one call of the store, as
// UpsertOrganizations does.
func (s *Syncer) UpsertMemberships(ctx context.Context, ms []Membership) ([]usersync.Outcome, error) {
	for i := range ms {
		s.completeMembership(&ms[i])
		if err := s.checkFuture(ms[i].Version); err != nil {
			return nil, fmt.Errorf("membership %d: %w", i, err)
		}
	}
	outcomes, err := s.store.UpsertMemberships(ctx, ms)
	if err == nil {
		for i, o := range outcomes {
			s.changed(ctx, o, usersync.EntityMembership, ms[i].OrganizationID, ms[i].UserSubject, ms[i].UpdatedAt)
		}
	}
	return outcomes, err
}

// DeleteMembership tombstones the membership m names (its Issuer,
// OrganizationID, UserSubject, ID and CreatedAt), under the rules of
// Store.DeleteMembership, at the clock's time.
func (s *Syncer) DeleteMembership(ctx context.Context, m Membership) (Membership, usersync.Outcome, error) {
	m.Issuer = canonical(m.Issuer)
	m.UpdatedAt = s.cfg.Now()
	got, outcome, err := s.store.DeleteMembership(ctx, m)
	if err == nil {
		s.changed(ctx, outcome, usersync.EntityMembership, got.OrganizationID, got.UserSubject, got.UpdatedAt)
	}
	return got, outcome, err
}

func (s *Syncer) completeOrg(o *Organization) {
	o.Issuer = canonical(o.Issuer)
	if o.UpdatedAt.IsZero() {
		o.UpdatedAt = s.cfg.Now()
	}
}

func (s *Syncer) completeMembership(m *Membership) {
	m.Issuer = canonical(m.Issuer)
	if m.UpdatedAt.IsZero() {
		m.UpdatedAt = s.cfg.Now()
	}
}

func (s *Syncer) checkFuture(v usersync.Version) error {
	if limit := s.cfg.Now().Add(maxFutureSkew); v > usersync.Version(limit.UnixMilli()) {
		return fmt.Errorf("%w: version %d is more than %v in the future", usersync.ErrInvalid, v, maxFutureSkew)
	}
	return nil
}

func (s *Syncer) changed(ctx context.Context, o usersync.Outcome, e usersync.Entity, orgID, subject string, at time.Time) {
	if o == usersync.Stale {
		return
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "usersync: "+e.String()+" changed", "outcome", o.String(), "organization_id", orgID)
	}
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(ctx, usersync.Change{Entity: e, Outcome: o, OrganizationID: orgID, Subject: subject, At: at})
	}
}

// canonical is an issuer without trailing slashes, as in token
// identifiers.
func canonical(issuer string) string { return strings.TrimRight(issuer, "/") }
