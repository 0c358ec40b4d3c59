// Package feed runs an app's side effects of user changes from the store's
// change feed, at least once each, across replicas and crashes: erasing a
// deleted user's rows, cancelling a subscription, purging a search index,
// sending an email.
//
// Every write that changes a user appends a usersync.Change to the store's
// feed in the same transaction (Store.Changes): a store with a feed and
// leases implements Store, as memstore's and sqlstore's do; a store that
// keeps organizations (package orgs) appends their changes and their
// memberships' too, with Change.Entity set. A Runner
// delivers each change to each registered handler, in feed order (so each
// user's changes in the order of the writes), and keeps each handler's
// position in the store. A handler that fails is retried with backoff; after MaxAttempts it
// is parked (logged, and passed to OnParked, which may keep it) and the
// feed moves on, so one poison change does not hold up everyone else for
// more than a minute and a half. With several replicas each handler runs in one of them at a
// time (a lease); when that replica dies, another takes over from the last
// saved position, or its own restart does at once, with a stable
// Config.Holder. WaitCaughtUp waits for a consumer to pass the changes
// written so far.
//
// At least once means a change can be delivered again: after a crash or a
// lost lease, the changes since the last saved position are. Write
// handlers to be idempotent: an UPDATE that sets a value rather than
// adding to it, an insert keyed by Change.Seq or by the user, a check of
// whether the effect is already there. Erasing a deleted user's messages,
// for instance, is "UPDATE messages SET body = '[deleted]' WHERE user_id =
// $1": running it twice changes nothing.
package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/telemetry"
	"github.com/usersync/usersync/lease"
)

// Store is what a Runner needs of a store: the change feed of the users it
// keeps, and leases for the consumers, whose cursors are their positions.
// memstore and sqlstore implement it; usersynctest.TestStore checks its
// rules for any usersync.Store that does. Its methods follow the rules of
// usersync.Store's: each takes a context first, honours its cancellation,
// and is atomic on its own; errors wrap usersync's sentinels where one
// applies.
type Store interface {
	// Changes returns up to limit changes with a Seq above after, in Seq
	// order: the change feed. Every write that reports Created, Updated
	// or Deleted appends one change, atomically with the write: a change
	// is visible if and only if its write is, and a failed or Stale write
	// appends none. Seq grows in the order changes become visible, so a
	// reader that passes the Seq of the last change it read as the next
	// after never misses one: a change committed later gets a higher Seq,
	// whatever order concurrent writers committed in. The changes of one
	// user are in the order of its writes. A limit below 1 fails with
	// usersync.ErrInvalid.
	Changes(ctx context.Context, after int64, limit int) ([]usersync.Change, error)

	// PruneChanges deletes the changes with a Seq up to through whose At
	// is before before, and returns how many it deleted. Seqs are never
	// reused: a store may keep the newest change to that end.
	PruneChanges(ctx context.Context, through int64, before time.Time) (int, error)

	lease.Store
}

// Handler does one consumer's work for one change. An error (or a panic)
// means "not done": the change is delivered again, after a backoff. A
// handler must return when ctx ends: it ends when the consumer's lease is
// lost, and another replica then delivers the change.
type Handler func(ctx context.Context, c usersync.Change) error

// Config configures a Runner. Store is required; every other field has the
// default its comment gives.
type Config struct {
	// Store holds the feed, the consumers' positions and their leases: the
	// store the app's Syncer writes to.
	Store Store
	// Holder names this replica in the leases. Default: host name,
	// process ID and a random suffix, unique to the process: after a
	// crash, the restarted process waits for the dead one's leases to
	// expire (LeaseTTL) before its consumers go on. A stable name of the
	// replica that its restarts keep (a pod name) lets them go on at once,
	// from the last saved positions; two live processes must never share
	// one, or both would run the same consumers (see package lease).
	Holder string
	// BatchSize is how many changes a consumer reads at a time; its
	// position is saved after each batch. Default 100.
	BatchSize int
	// PollInterval is how long a consumer that is up to date waits before
	// it reads the feed again: the latency of a change. Default 50 ms.
	PollInterval time.Duration
	// MaxAttempts is how many times a change is handed to a failing
	// handler before it is parked. With the default delays, 10 attempts
	// take about 90 seconds: an outage of what the handler writes to that
	// lasts longer parks changes (keep them with OnParked). Default 10.
	MaxAttempts int
	// RetryDelay is the wait after a first failure; it doubles after each
	// one, up to 30 seconds. Default 200 ms.
	RetryDelay time.Duration
	// OnParked, if set, receives every change about to be parked, with the
	// handler's last error, in the consumer's goroutine. It keeps the
	// change for a later look or replay (in a table of the app's own, say);
	// if it fails, the change is not parked but delivered again, as if the
	// handler had failed. Without it, a parked change is only logged.
	OnParked func(ctx context.Context, consumer string, c usersync.Change, err error) error
	// LeaseTTL is how long a consumer's lease outlives a replica that
	// stops renewing it: how long a takeover can take. Default 30 s.
	LeaseTTL time.Duration
	// Retention is how long changes that every consumer has passed are
	// kept, for apps that read the feed themselves. Default 24 hours.
	Retention time.Duration
	// MaxAge is how long any change is kept, passed or not: a consumer that
	// is removed from the code (or lags by more) does not make the feed
	// grow forever. Default 30 days.
	MaxAge time.Duration
	// PruneEvery is how often each replica prunes. Default 1 hour.
	PruneEvery time.Duration
	// Logger logs failed and parked changes, takeovers and pruning, with
	// the trace ID of the delivery's span. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of pruning and of the lag. Default time.Now.
	Now func() time.Time
	// MeterProvider receives usersync_feed_deliveries_total by consumer
	// and result (ok and failed attempts, parked changes) and
	// usersync_feed_lag_seconds, the age of the change each consumer is at
	// (0 when it has caught up), observed by the replica that runs it;
	// TracerProvider a span per delivery, the parent of the handler's
	// (the handler's context carries it). Default: the global providers
	// of go.opentelemetry.io/otel, which do nothing until the app
	// installs the OpenTelemetry SDK.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// Runner delivers the feed to named handlers. Register them with Handle,
// then call Run.
type Runner struct {
	cfg Config

	mu        sync.Mutex
	consumers map[string]registered
	running   bool
}

// registered is a consumer's handler and what it asked for.
type registered struct {
	h   Handler
	all bool // every entity; else users only
}

// consumerName is what a consumer's name may be: it names its lease.
var consumerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)

// leasePrefix begins the name of every consumer's lease.
const leasePrefix = "usersync:feed:"

// New returns the Runner of cfg, or an error wrapping usersync.ErrInvalid.
func New(cfg Config) (*Runner, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: feed.Config needs the Store", usersync.ErrInvalid)
	}
	if cfg.BatchSize < 0 || cfg.PollInterval < 0 || cfg.MaxAttempts < 0 || cfg.RetryDelay < 0 ||
		cfg.Retention < 0 || cfg.MaxAge < 0 || cfg.PruneEvery < 0 {
		return nil, fmt.Errorf("%w: feed.Config: a negative setting", usersync.ErrInvalid)
	}
	if err := lease.CheckConfig("feed.Config", cfg.LeaseTTL, cfg.Holder); err != nil {
		return nil, err
	}
	config.Default(&cfg.BatchSize, 100)
	config.Default(&cfg.PollInterval, 50*time.Millisecond)
	config.Default(&cfg.MaxAttempts, 10)
	config.Default(&cfg.RetryDelay, 200*time.Millisecond)
	config.Default(&cfg.LeaseTTL, 30*time.Second)
	config.Default(&cfg.Retention, 24*time.Hour)
	config.Default(&cfg.MaxAge, 30*24*time.Hour)
	config.Default(&cfg.PruneEvery, time.Hour)
	if cfg.Holder == "" {
		cfg.Holder = lease.NewHolder()
	}
	cfg.Logger = telemetry.Logger(cfg.Logger)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Runner{cfg: cfg, consumers: map[string]registered{}}, nil
}

// Handle registers h as the consumer name: letters, digits and ". _ : -",
// at most 100, unique. The name keys the consumer's position in the store,
// so keep it when the code changes; a new name starts from the oldest
// change the feed still holds. Register every consumer before Run.
//
// h receives the changes of users only (Change.Entity is EntityUser): a
// handler written before the feed carried organizations keeps working.
// HandleAll registers one for every entity.
func (r *Runner) Handle(name string, h Handler) error { return r.handle(name, h, false) }

// HandleAll registers h as Handle does, for the changes of every entity:
// users, organizations and memberships (package orgs). h switches on
// Change.Entity.
func (r *Runner) HandleAll(name string, h Handler) error { return r.handle(name, h, true) }

func (r *Runner) handle(name string, h Handler, all bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.running:
		return fmt.Errorf("%w: feed: Handle after Run", usersync.ErrInvalid)
	case h == nil || !consumerName.MatchString(name):
		return fmt.Errorf("%w: feed: a consumer needs a handler and a name of letters, digits and \". _ : -\"", usersync.ErrInvalid)
	case r.consumers[name].h != nil:
		return fmt.Errorf("%w: feed: consumer %q is registered twice", usersync.ErrInvalid, name)
	}
	r.consumers[name] = registered{h, all}
	return nil
}

// Run delivers the feed to every consumer, each in a goroutine of its own
// (in the replica that holds its lease), and prunes the feed every
// PruneEvery, until ctx ends. It returns ctx's error once every consumer
// has stopped and let its lease go.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return fmt.Errorf("%w: feed: Run called twice", usersync.ErrInvalid)
	}
	r.running = true
	consumers := make(map[string]registered, len(r.consumers))
	for name, reg := range r.consumers {
		consumers[name] = reg
	}
	r.mu.Unlock()

	var wg sync.WaitGroup
	for name, reg := range consumers {
		c := &consumer{r: r, name: name, h: reg.h, all: reg.all, tel: newConsumerTelemetry(r.cfg.MeterProvider, r.cfg.TracerProvider, name, r.cfg.Now)}
		wg.Go(func() { c.run(ctx) })
	}
	wg.Go(func() { r.pruneEvery(ctx, consumers) })
	wg.Wait()
	return ctx.Err()
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errPanic wraps a handler's panic.
var errPanic = errors.New("feed: the handler panicked")
