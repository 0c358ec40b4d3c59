package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/telemetry"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/orgs"
)

// OrganizationConfig configures an OrganizationReconciler, as Config
// configures the users' Reconciler: its fields of the same name mean the
// same. Syncer and Source are required; every other field has the default
// its comment gives.
type OrganizationConfig struct {
	// Syncer applies the writes and deletes: its OnChange sees them as it
	// sees a webhook's. Its store is where the reconcile lists the stored
	// organizations and memberships and holds its leases: it must
	// implement lease.Store, as memstore's and sqlstore's do.
	Syncer *orgs.Syncer
	// Source lists the provider's organizations and their memberships:
	// clerk.OrganizationList.
	Source OrganizationSource
	// PageSize is how many organizations or memberships a page lists and
	// a batch writes, 2 to 500 (pages overlap by an item). Default 500.
	PageSize int
	// Concurrency is how many organizations' memberships a run lists at
	// once, 1 to 16: the Source must be safe for concurrent use
	// (clerk.OrganizationList is, and shares one pause after a 429 among
	// its requests). Default 4.
	Concurrency int
	// MaxDeleteShare and MaxDeleteCount bound the deletions of one run,
	// of organizations and of memberships each: a run that would delete
	// more than MaxDeleteShare of the issuer's organizations live before
	// it and more than MaxDeleteCount of them, or as many of the
	// memberships live before it (counted in total, over every
	// organization, not per organization), writes nothing, logs them and
	// fails with ErrMassDelete. (One exception: a list too large to keep
	// in memory is listed a second time to be written, and the guards,
	// checked again before the deletions, refuse after the writes if the
	// provider's list lost that much in between.) Defaults (for 0) 0.10
	// and 10; a negative value means none.
	MaxDeleteShare float64
	MaxDeleteCount int
	// AllowMassDelete lifts the guards (ErrMassDelete, ErrForeignList), for
	// the run after an operator has checked what they refused.
	AllowMassDelete bool
	// LeaseTTL is how long the lease outlives a replica that stops
	// renewing it (it renews every third of it), at least 100 ms; a
	// RunEvery that skips its turn looks again this often. Default 1
	// minute.
	LeaseTTL time.Duration
	// Holder names this replica in the leases, as Config.Holder does.
	// Default: host name, process ID and a random suffix.
	Holder string
	// OnProgress, if set, is called after every page of organizations
	// (with their memberships) and at the end, in the goroutine of Run.
	OnProgress func(OrganizationReport)
	// Logger logs the start, progress at most every 10 seconds, skipped
	// items, refused deletions and the summary. Default slog.Default().
	Logger *slog.Logger
	// MeterProvider receives usersync_reconcile_runs_total by issuer,
	// result and entity=organization, and usersync_reconcile_items_total
	// by issuer, entity (organization, membership) and outcome (created,
	// updated, unchanged, skipped, deleted); TracerProvider a span per
	// run (usersync.reconcile.organizations) and one per batch it writes
	// (usersync.reconcile.page, with the entity). Default: the global
	// providers of go.opentelemetry.io/otel.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// OrganizationReconciler reconciles one OrganizationSource into one
// store: the organizations of its issuer and their memberships, under the
// rules the package doc gives for users. It is safe for concurrent use:
// of concurrent runs of one issuer, in this process or any replica, one
// runs and the others fail with ErrRunning. Its lease is its own, so it
// runs beside the users' Reconciler of the same issuer.
//
// A run pages through the provider's organizations, oldest first, writing
// each page as one batch, and through the memberships of each, writing
// them in batches of PageSize. A store that holds organizations of the
// issuer is listed whole before anything is written, and refused, before
// any write, as the users' guard refuses (ErrForeignList: a tenth of the
// stored organizations or fewer listed; ErrMassDelete: more organizations
// or more memberships missing than the guard allows). After a complete,
// error-free sweep, the organizations live before the run that the
// provider no longer lists (or that it deleted during the sweep) are
// confirmed gone one by one (LookupOrganization) and deleted with their
// memberships, and so are the memberships live before the run of the
// organizations it lists that their list lacks (LookupMembership). One
// that the provider has after all is written instead. Organizations and
// memberships stored during the run are never deleted by it.
type OrganizationReconciler struct {
	cfg    OrganizationConfig
	issuer string     // the Source's, without trailing slashes, as stored
	store  orgs.Store // the Syncer's
	runs   *runner
	guards guard
	tel    *runTelemetry
	keep   int // the most bytes of listed items a run keeps between listing and writing them
}

// NewOrganizations returns the OrganizationReconciler of cfg, or an error
// wrapping usersync.ErrInvalid for a missing or out-of-range field, or a
// Syncer whose store keeps no leases.
func NewOrganizations(cfg OrganizationConfig) (*OrganizationReconciler, error) {
	switch {
	case cfg.Syncer == nil || cfg.Source == nil:
		return nil, fmt.Errorf("%w: reconcile.OrganizationConfig needs the Syncer and a Source", usersync.ErrInvalid)
	case strings.TrimRight(cfg.Source.Issuer(), "/") == "":
		return nil, fmt.Errorf("%w: reconcile: the OrganizationSource has no issuer", usersync.ErrInvalid)
	case cfg.PageSize < 0 || cfg.PageSize == 1 || cfg.PageSize > 500:
		return nil, fmt.Errorf("%w: reconcile.OrganizationConfig.PageSize is 2 to 500", usersync.ErrInvalid)
	case cfg.Concurrency < 0 || cfg.Concurrency > 16:
		return nil, fmt.Errorf("%w: reconcile.OrganizationConfig.Concurrency is 1 to 16", usersync.ErrInvalid)
	case cfg.MaxDeleteShare > 1:
		return nil, fmt.Errorf("%w: reconcile.OrganizationConfig.MaxDeleteShare is above 1", usersync.ErrInvalid)
	}
	if err := lease.CheckConfig("reconcile.OrganizationConfig", cfg.LeaseTTL, cfg.Holder); err != nil {
		return nil, err
	}
	store := cfg.Syncer.Store()
	leases, err := leasesOf("the orgs Syncer's store", store)
	if err != nil {
		return nil, err
	}
	config.Default(&cfg.PageSize, 500)
	config.Default(&cfg.Concurrency, 4)
	g := newGuard(cfg.MaxDeleteShare, cfg.MaxDeleteCount, cfg.AllowMassDelete, telemetry.Logger(cfg.Logger))
	cfg.MaxDeleteShare, cfg.MaxDeleteCount = g.share, g.count
	config.Default(&cfg.LeaseTTL, time.Minute)
	if cfg.Holder == "" {
		cfg.Holder = lease.NewHolder()
	}
	cfg.Logger = g.log
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	iss := strings.TrimRight(cfg.Source.Issuer(), "/")
	return &OrganizationReconciler{
		cfg: cfg, issuer: iss, store: store, guards: g,
		runs: newRunner("reconcile organizations", iss, "usersync:reconcile-orgs:", "usersync:reconciled-orgs:", leases, cfg.Holder, cfg.LeaseTTL, cfg.Now, cfg.Logger),
		tel:  newOrgTelemetry(cfg.MeterProvider, cfg.TracerProvider, iss), keep: keepBytes,
	}, nil
}

// Run reconciles once, as the users' Reconciler.Run does: it takes the
// lease (failing with ErrRunning if another replica holds it), sweeps
// every page of organizations and the memberships of each, then deletes
// what the provider no longer has. A list the Source fails ends the sweep
// (the Source retries what can be retried, a 429 after its Retry-After);
// a batch the store fails to write is counted out and the sweep goes on;
// either way the run is incomplete: it deletes nothing and returns an
// error, with the report of what it did. An organization whose
// memberships the Source answers with orgs.ErrNotFound was deleted during
// the sweep: none of its memberships is written, and it is a candidate for
// deletion. Run stops when ctx ends.
func (r *OrganizationReconciler) Run(ctx context.Context) (OrganizationReport, error) {
	return r.run(ctx, 0)
}

// RunEvery runs a reconcile at once and then every interval, until ctx
// ends, as the users' Reconciler.RunEvery does: once per interval across
// the replicas. It returns ctx's error; a run's error is logged.
func (r *OrganizationReconciler) RunEvery(ctx context.Context, interval time.Duration) error {
	return r.runs.runEvery(ctx, interval, func(ctx context.Context, every time.Duration) (slog.LogValuer, error) {
		return r.run(ctx, every)
	})
}

// OrganizationReport tells what an organizations reconcile did, so far
// (as OnProgress receives it) or in all (as Run returns it).
type OrganizationReport struct {
	// Issuer is the Source's issuer.
	Issuer string
	// Organizations and Memberships count what the run did to each.
	Organizations, Memberships Counts
	// Complete reports that every page was listed and stored without an
	// error, so deletions were considered.
	Complete bool
	// Started and Finished bound the run.
	Started, Finished time.Time
}

// Counts tells what a reconcile did to the organizations, or to the
// memberships.
type Counts struct {
	// Listed counts the items the provider listed (each once), and those
	// a lookup before a delete found after all.
	Listed int
	// Created, Updated and Unchanged count the listed items by outcome;
	// Unchanged includes items deleted here that the provider still lists
	// (a tombstone is final), and memberships of a deleted user. Skipped
	// counts items that could not be stored (malformed, or of another
	// issuer or organization), which are logged.
	Created, Updated, Unchanged, Skipped int
	// Deleted counts the items deleted because the provider no longer has
	// them (not the memberships a deleted organization ends with it).
	Deleted int
	// Refused holds the IDs (the provider's: "org_…", "orgmem_…") of the
	// items the provider no longer has but that the mass-delete guard
	// kept: nil unless Run failed with ErrMassDelete.
	Refused []string
}

// add counts an outcome of a write.
func (c *Counts) add(o usersync.Outcome) {
	switch o {
	case usersync.Created:
		c.Created++
	case usersync.Updated:
		c.Updated++
	default:
		c.Unchanged++
	}
}

// LogValue logs the counts, never the IDs.
func (c Counts) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("listed", c.Listed), slog.Int("created", c.Created), slog.Int("updated", c.Updated),
		slog.Int("unchanged", c.Unchanged), slog.Int("skipped", c.Skipped), slog.Int("deleted", c.Deleted),
		slog.Int("refused", len(c.Refused)),
	)
}

// LogValue logs the counts, never the IDs.
func (r OrganizationReport) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("organizations", r.Organizations), slog.Any("memberships", r.Memberships),
		slog.Bool("complete", r.Complete),
	)
}

// outcomes returns c's counts for the telemetry, of entity.
func (c Counts) outcomes(entity attribute.KeyValue) outcomes {
	return outcomes{created: c.Created, updated: c.Updated, unchanged: c.Unchanged, skipped: c.Skipped, deleted: c.Deleted, entity: entity}
}

// run reconciles once, as Run says; every is as for the users' run.
func (r *OrganizationReconciler) run(ctx context.Context, every time.Duration) (OrganizationReport, error) {
	ctx, span := r.tel.start(ctx)
	report, err := r.sweep(ctx, every)
	o, m := report.Organizations, report.Memberships
	r.tel.ran(ctx, span, err, o.Listed+m.Listed, o.Deleted+m.Deleted,
		o.outcomes(entityOrganization), m.outcomes(entityMembership))
	return report, err
}
