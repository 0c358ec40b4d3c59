// Package reconcile heals a store from the provider's list of users: the
// pull path beside the webhooks' push path. It serves the first import of
// the users a provider already has (a backfill), and the periodic healing
// of webhooks that were missed for good.
//
// A run pages through the provider's users, oldest first, and applies each
// page as one batch of ordinary versioned writes (a user's version is its
// updated_at): a reconcile never rolls back a newer webhook, and running it
// twice changes nothing. After a complete, error-free sweep, the live
// users of the issuer that the provider no longer lists are confirmed
// gone one by one and tombstoned, unless there are more of them than the
// mass-delete guard allows. With several replicas, one run at a time
// holds a lease in the store: the Syncer's store must keep leases
// (lease.Store), as memstore's and sqlstore's do.
//
// A run into a store that holds users of the issuer lists every page
// before it writes one, and refuses, before any write, a list that shares
// almost nothing with the stored users (ErrForeignList: another instance's
// users) or that lacks more of them than the mass-delete guard allows
// (ErrMassDelete). The guard counts over the users live before the run.
//
// Offset paging over a list that changes skips and repeats users. Repeats
// are dropped (and would be harmless: the writes are versioned). Users
// created during the sweep come last in the oldest-first order. Each page
// overlaps the previous one by a user: when that user is not where it was,
// users before the offset were deleted and the list moved left, so the
// sweep lists the page before again, where the users it would have skipped
// went. A stored user the sweep still missed is a deletion candidate, and
// the lookup before the delete stores it instead.
//
// An OrganizationReconciler (NewOrganizations) heals a store's
// organizations and memberships (orgs.Store) from an OrganizationSource
// under the same rules: batches of pages, complete sweeps only, the same
// guards (counted for organizations and, in total, for memberships), a
// lookup before each delete, and a lease of its own.
package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/telemetry"
	"github.com/usersync/usersync/lease"
)

// Errors of Run, of the users' Reconciler and of the
// OrganizationReconciler, checked with errors.Is.
var (
	// ErrRunning reports that another holder (a replica) holds the
	// reconcile's lease, or took it over during the run.
	ErrRunning = errors.New("reconcile: another reconcile of this issuer is running")
	// ErrMassDelete reports that the guard refused to delete the users in
	// Report.Refused (the organizations or memberships in the Refused of
	// OrganizationReport's Counts): more than MaxDeleteShare and
	// MaxDeleteCount allow. Check the provider's list (a secret key of
	// another instance lists other users), then run again with
	// AllowMassDelete.
	ErrMassDelete = errors.New("reconcile: refused to delete more than the guard allows")
	// ErrForeignList reports a provider's list that holds fewer than a
	// tenth of the issuer's stored users (or organizations): most likely
	// the list of another instance (a secret key of another Clerk
	// instance), whose import would bury the real ones. Nothing was
	// written. Check the Source's credentials; if the users were really
	// replaced, run again with AllowMassDelete.
	ErrForeignList = errors.New("reconcile: refused the provider's list: it shares almost nothing with the store")
)

// Config configures a Reconciler. Syncer and Source are required; every
// other field has the default its comment gives.
type Config struct {
	// Syncer applies the writes: its OnChange sees them as it sees a
	// webhook's. Its store is where the reconcile lists the stored users
	// and holds its leases: it must implement lease.Store.
	Syncer *usersync.Syncer
	// Source lists the provider's users: clerk.UserList.
	Source Source
	// PageSize is how many users a page lists and a batch writes, 2 to
	// 500 (pages overlap by a user). Default 500.
	PageSize int
	// MaxDeleteShare and MaxDeleteCount bound the deletions of one run:
	// a run that would delete more than MaxDeleteShare of the issuer's
	// users live before it and more than MaxDeleteCount users writes
	// nothing, logs them and fails with ErrMassDelete. Defaults (for 0) 0.10 and 10; a
	// negative value means none: with MaxDeleteCount -1, only the share
	// bounds a run.
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
	// Holder names this replica in the leases. Default: host name, process
	// ID and a random suffix, unique to the process. A stable name of the
	// replica that its restarts keep (a pod name) lets a restarted replica
	// take back at once the run its killed process left, instead of after
	// LeaseTTL; two live processes must never share one (see package
	// lease).
	Holder string
	// OnProgress, if set, is called after every page and at the end, in
	// the goroutine of Run.
	OnProgress func(Report)
	// Logger logs the start, progress at most every 10 seconds, skipped
	// users, refused deletions and the summary; the lines of a run carry
	// the trace ID of its span. Default slog.Default().
	Logger *slog.Logger
	// MeterProvider receives usersync_reconcile_runs_total by issuer and
	// result (complete, failed, refused, canceled, skipped) and
	// usersync_reconcile_users_total by issuer and outcome (created,
	// updated, unchanged, skipped, deleted); TracerProvider a span per run
	// and one per page it writes (the store's spans below them). Default:
	// the global providers of go.opentelemetry.io/otel, which do nothing
	// until the app installs the OpenTelemetry SDK.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Reconciler reconciles one Source into one store. It is safe for
// concurrent use: of concurrent runs of one issuer, in this process or
// any replica, one runs and the others fail with ErrRunning.
type Reconciler struct {
	cfg    Config
	store  usersync.Store // the Syncer's
	runs   *runner        // one run at a time, RunEvery's turns
	guards guard
	tel    *runTelemetry
	keep   int // the most bytes of users a run keeps in memory between listing and writing them
}

// keepBytes bounds the listed users a run keeps in memory until the guards
// have passed (about 1 KiB a user, more with metadata: see writeSize). A
// larger list is listed again to be written.
const keepBytes = 32 << 20

// New returns the Reconciler of cfg, or an error wrapping
// usersync.ErrInvalid for a missing or out-of-range field, or a Syncer
// whose store keeps no leases.
func New(cfg Config) (*Reconciler, error) {
	switch {
	case cfg.Syncer == nil || cfg.Source == nil:
		return nil, fmt.Errorf("%w: reconcile.Config needs the Syncer and a Source", usersync.ErrInvalid)
	case cfg.Source.Issuer() == "":
		return nil, fmt.Errorf("%w: reconcile: the Source has no issuer", usersync.ErrInvalid)
	case cfg.PageSize < 0 || cfg.PageSize == 1 || cfg.PageSize > 500:
		// Pages overlap by a user: a page of one would never move on.
		return nil, fmt.Errorf("%w: reconcile.Config.PageSize is 2 to 500", usersync.ErrInvalid)
	case cfg.MaxDeleteShare > 1:
		return nil, fmt.Errorf("%w: reconcile.Config.MaxDeleteShare is above 1", usersync.ErrInvalid)
	}
	if err := lease.CheckConfig("reconcile.Config", cfg.LeaseTTL, cfg.Holder); err != nil {
		return nil, err
	}
	store := cfg.Syncer.Store()
	leases, err := leasesOf("the Syncer's store", store)
	if err != nil {
		return nil, err
	}
	config.Default(&cfg.PageSize, 500)
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
	iss := cfg.Source.Issuer()
	return &Reconciler{
		cfg: cfg, store: store, guards: g,
		runs: newRunner("reconcile", iss, "usersync:reconcile:", "usersync:reconciled:", leases, cfg.Holder, cfg.LeaseTTL, cfg.Now, cfg.Logger),
		tel:  newRunTelemetry(cfg.MeterProvider, cfg.TracerProvider, iss), keep: keepBytes,
	}, nil
}

// leasesOf returns store's leases, which every reconcile holds one of, or
// an error wrapping usersync.ErrInvalid that names what store is.
func leasesOf(what string, store any) (lease.Store, error) {
	leases, ok := store.(lease.Store)
	if !ok {
		return nil, fmt.Errorf("%w: reconcile: %s (%T) keeps no leases: it lacks the methods of lease.Store (AcquireLease, RenewLease, ReleaseLease, LeaseCursors)", usersync.ErrInvalid, what, store)
	}
	return leases, nil
}

// leaseName names a lease of an issuer's reconcile: prefix and the
// issuer, or prefix and the issuer's SHA-256 if that is too long for a
// lease name.
func leaseName(prefix, issuer string) string {
	if name := prefix + issuer; len(name) <= 255 {
		return name
	}
	sum := sha256.Sum256([]byte(issuer))
	return prefix + "sha256:" + hex.EncodeToString(sum[:])
}

// Run reconciles once: it takes the lease (failing with ErrRunning if
// another replica holds it), sweeps every page, then deletes the users the
// provider no longer has. A page the Source fails to list ends the sweep
// (the Source retries what can be retried); a page the store fails to
// write is counted out and the sweep goes on, but either way the run is
// incomplete: it deletes nothing and returns an error, with the Report of
// what it did. Run stops when ctx ends. It runs whenever it is called:
// RunEvery's interval neither holds it back nor counts it.
func (r *Reconciler) Run(ctx context.Context) (Report, error) {
	return r.run(ctx, 0)
}

// RunEvery runs a reconcile at once and then every interval, until ctx
// ends; it returns ctx's error. A run's error is logged, not returned.
//
// With several replicas each calling RunEvery, the provider is swept once
// per interval, not once per replica: a complete sweep leaves a second
// lease of the issuer held until interval after it started, and a replica
// (this one included) that finds it held skips its turn. It looks again
// every LeaseTTL (at most every interval), so that when the replica that
// swept last stops, another one sweeps within about LeaseTTL of the time
// the sweep is due. An incomplete sweep leaves nothing held: the next turn
// of any replica sweeps.
func (r *Reconciler) RunEvery(ctx context.Context, interval time.Duration) error {
	return r.runs.runEvery(ctx, interval, func(ctx context.Context, every time.Duration) (slog.LogValuer, error) {
		return r.run(ctx, every)
	})
}
