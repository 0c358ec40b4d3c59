package clerk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/internal/telemetry"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
	"github.com/usersync/usersync/sessions"
)

// SetupConfig is what Wire (and Setup) wires: the instance (Config) and
// the settings of the parts Wire builds around it, which the Provider
// itself never reads. Every field but Config.Issuer has the default its
// comment gives.
type SetupConfig struct {
	// Config describes the instance. With a SecretKey, the App also
	// completes the users that session tokens create (CompletionWait) and
	// has a Reconciler.
	Config
	// Logger is the logger of every part (Config.Logger too, where nil).
	// Default slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes the error responses of the Syncer's
	// middlewares: see usersync.Config.ErrorHandler.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// OnChange is called after every write that changed stored state, in
	// process and best effort: see usersync.Config.OnChange. With a store
	// that keeps organizations, their writes and their memberships' come
	// too, with Change.Entity set (orgs.Config.OnChange). Side effects
	// that must happen belong to the consumers of App.Feed.
	OnChange func(context.Context, usersync.Change)
	// MeterProvider and TracerProvider receive the metrics and spans of
	// every part: the verifier, the webhook handler, the reconciler and the
	// feed. Default: the global providers of go.opentelemetry.io/otel.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// CompletionWait is how long a request whose session token has just
	// created its user waits for the user to be completed from the Backend
	// API (GET /users/{id}): name, email, phone, username, picture,
	// external ID and metadata, which Clerk's default session token does
	// not carry, written at the user's updated_at as a webhook would (a
	// newer webhook is never rolled back, a deleted user never comes back).
	// Past it, the request goes on with the user as the token made them,
	// and the completion ends in the background. Completions need
	// Config.SecretKey and a running Run; each user is looked up once,
	// one lookup at a time and at most 5 a second, and a 429 holds them
	// all for its Retry-After. Default (0) 1 s; negative: no completion,
	// and the user stays as the token made them until the webhook (or a
	// reconcile) comes.
	CompletionWait time.Duration
	// ReconcileEvery, if above 0, makes Run reconcile the Backend API's
	// users into the store at once and then every interval, once per
	// interval across replicas (reconcile.Reconciler.RunEvery), and so its
	// organizations and memberships with a store that keeps them
	// (reconcile.OrganizationReconciler.RunEvery). It needs
	// Config.SecretKey and a store that keeps leases. Default 0: Run does
	// not reconcile.
	ReconcileEvery time.Duration
	// Reconcile holds the reconciler's own settings (its guards, lease,
	// OnProgress). Wire sets its Syncer and Source, and its Logger and
	// providers where nil.
	Reconcile reconcile.Config
	// ReconcileOrganizations holds the organizations reconciler's own
	// settings. Wire sets its Syncer (App.Orgs) and Source
	// (App.Organizations), its Holder to Reconcile.Holder where empty, and
	// its Logger and providers where nil.
	ReconcileOrganizations reconcile.OrganizationConfig
	// Feed holds the change feed runner's own settings (OnParked,
	// LeaseTTL, retention). Wire sets its Store, and its Logger and
	// providers where nil.
	//
	// Give Feed.Holder and Reconcile.Holder the replica's stable name (a
	// pod's name, unique among the live replicas) and a replica restarted
	// after a crash takes its leases back at once, instead of waiting for
	// them to expire: see lease.Claim.
	Feed feed.Config
	// EndedSessions holds the settings of the Set of ended sessions
	// (App.Sessions) that Wire makes when the store implements
	// sessions.Store (as memstore's and sqlstore's do): Keep, Poll,
	// MaxStale, StartupWait. Wire sets its Store (to the store), its
	// Logger and its MeterProvider where nil. To give Wire a Set of your
	// own, which it then uses as it is, set Config.Sessions.
	EndedSessions sessions.Config
	// SessionStatus holds the settings of App.SessionStatus, the strict
	// mode (CacheFor, CacheSize, MaxWait, MaxCallsPerSecond, Realm, Now).
	// Wire sets its Sessions (App.Sessions), ErrorHandler and Logger where
	// nil.
	SessionStatus SessionStatusConfig
}

// App is one Clerk instance wired to a store by Wire: the parts an app
// mounts and uses, and Run, which runs their background work. Parts that
// need what the config or the store lacks are nil.
type App struct {
	// Provider is the instance: the usersync.Provider of its webhooks,
	// and the jwtverify.Issuer of its session tokens.
	Provider *Provider
	// Verifier verifies the instance's session tokens: the Syncer's
	// Extractor. Its Verify checks a token outside the middlewares (the
	// first message of a WebSocket, say).
	Verifier *jwtverify.Verifier
	// Syncer keeps the store; its RequireUser, LoadUser and
	// RequireIdentity are the current-user middlewares.
	Syncer *usersync.Syncer
	// Orgs keeps the instance's organizations and memberships, which
	// Webhook applies (organization.*, organizationMembership.*); its
	// RequireMember guards an organization's routes behind
	// Syncer.RequireUser. It is Config.Organizations if set, else one
	// Wire makes when the store implements orgs.Store (as memstore's and
	// sqlstore's do), sharing the logger, the error handler, OnChange and
	// Config.Now; else nil.
	Orgs *orgs.Syncer
	// Webhook receives the instance's webhooks: mount it at
	// "POST /clerk-users-webhook", outside any auth middleware.
	Webhook http.Handler
	// Users is the instance's user list in the Backend API, with
	// Config.SecretKey; else nil.
	Users *UserList
	// Organizations is the instance's organizations and memberships in
	// the Backend API, with Config.SecretKey; else nil. It shares Users'
	// requests (and their pause after a 429).
	Organizations *OrganizationList
	// Reconciler reconciles Users into the store, with Config.SecretKey
	// and a store that keeps leases (lease.Store, as memstore's and
	// sqlstore's do); else nil. Run runs it every ReconcileEvery; its own
	// Run reconciles once (a first import).
	Reconciler *reconcile.Reconciler
	// OrgReconciler reconciles Organizations into Orgs' store, with
	// Config.SecretKey and an Orgs whose store keeps leases; else nil. Run
	// runs it every ReconcileEvery, beside Reconciler (each holds a lease
	// of its own); its own Run reconciles once.
	OrgReconciler *reconcile.OrganizationReconciler
	// Feed delivers the store's change feed to the consumers the app
	// registers with Feed.Handle before Run: with a store that has a feed
	// (feed.Store, as memstore's and sqlstore's); else nil.
	Feed *feed.Runner
	// Sessions holds the ended sessions of every replica, in memory: the
	// Syncer's middlewares and the Verifier (its Verify too) refuse the
	// tokens of a session it holds with 401 (usersync.ErrSessionEnded).
	// Webhook records the endings of the session.ended, session.removed
	// and session.revoked events in it, and the store those of every
	// user it deletes; SessionStatus those Clerk reports as ended (not
	// the sessions Clerk does not know, which it refuses itself). It is
	// Config.Sessions if set, else one Wire makes (with the settings of
	// SetupConfig.EndedSessions) when the store implements sessions.Store (as
	// memstore's and sqlstore's do); else nil. Subscribe the instance's
	// webhook endpoint to the session.* events for it to learn of endings.
	//
	// Wire's Set reads the store until Close, not until Wire's ctx ends
	// or Run returns, so that a server shutting down after Run returned
	// finishes its requests: close the App after the server. A Set that
	// cannot read the store for SetupConfig.EndedSessions.MaxStale (1 s),
	// or that was closed, refuses every identity with 503 until it reads
	// again.
	Sessions *sessions.Set
	// SessionStatus is the strict mode, for the routes that want Clerk's
	// own word that a session is active: put SessionStatus.Require behind
	// Syncer.RequireUser (or RequireIdentity). With Config.SecretKey;
	// else nil, and then SessionStatus.Require panics when it is called
	// (at wiring, not per request), and Check and Active return an error.
	// It shares the logger, the error handler, App.Sessions and the
	// Backend API's requests (and their pause after a 429) with Users,
	// and holds its own calls to SetupConfig.SessionStatus.MaxCallsPerSecond
	// (default 10 a second).
	SessionStatus *SessionStatus

	life            context.Context // the App's: ends with Wire's ctx, Close or Run's end
	end             context.CancelCauseFunc
	completer       *completer // nil without completion
	ownSet          bool       // Sessions is Wire's: Close closes it
	every           time.Duration
	log             *slog.Logger
	closing         sync.Once
	closingSessions sync.Once
	mu              sync.Mutex
	ran             bool // Run was called
}

// errClosed is the cause of the end of an App that Close ended.
var errClosed = errors.New("clerk: App closed")

// Wire wires usersync for one Clerk instance: a Syncer over store whose
// extractor, a jwtverify.Verifier, trusts the instance's session tokens
// (so that its RequireUser, LoadUser and RequireIdentity work), the
// handler of the instance's webhooks, and, as the config and the store
// allow, the organizations' Syncer (for a store that implements
// orgs.Store: the webhook then applies the organization.* and
// organizationMembership.* events too), the Set of ended sessions (for a
// store that implements sessions.Store: the middlewares and the verifier
// then refuse the tokens of sessions that ended, which the webhook's
// session.* events and deleted users record), the Backend API's lists,
// the strict mode (App.SessionStatus), a reconciler and the change feed's
// runner. The logger, the error handler, OnChange and the telemetry
// providers are given once, in cfg, for every part.
//
// Wire fetches the instance's signing keys (at most
// jwtverify.Config.StartupWait, 5 s; a failure is logged, and fetched
// again later), and reads the ended sessions kept in the store (at most
// SetupConfig.EndedSessions.StartupWait, 5 s; until a read succeeds, every
// identity is refused with 503). The App's background work ends when ctx
// ends, Close is called or Run returns: run it with Run. An app that
// never calls Run still verifies tokens, stores users and receives
// webhooks, but delivers no change feed, runs no reconcile and completes
// no user; it calls Close (or lets ctx end) to stop the verifier's key
// refreshes and the reads of the ended sessions.
//
// A malformed config is an error wrapping usersync.ErrInvalid; errors never
// contain a secret.
func Wire(ctx context.Context, store usersync.Store, cfg SetupConfig) (*App, error) {
	if ostore, ok := store.(orgs.Store); ok && cfg.Organizations == nil {
		s, err := orgs.New(orgs.Config{Store: ostore, OnChange: cfg.OnChange, ErrorHandler: cfg.ErrorHandler, Logger: cfg.Logger, Now: cfg.Config.Now})
		if err != nil {
			return nil, err
		}
		cfg.Organizations = s
	}
	if cfg.Config.Logger == nil {
		cfg.Config.Logger = cfg.Logger
	}
	p, err := New(cfg.Config)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.ReconcileEvery < 0:
		return nil, fmt.Errorf("%w: clerk.SetupConfig.ReconcileEvery is negative", usersync.ErrInvalid)
	case cfg.ReconcileEvery > 0 && p.secretKey == "":
		return nil, fmt.Errorf("%w: clerk.SetupConfig.ReconcileEvery needs clerk.Config.SecretKey (sk_...)", usersync.ErrInvalid)
	case store == nil:
		return nil, fmt.Errorf("%w: clerk.Wire needs a store", usersync.ErrInvalid)
	}
	a := &App{Provider: p, Orgs: p.cfg.Organizations, every: cfg.ReconcileEvery, log: telemetry.Logger(cfg.Logger)}
	if p.secretKey != "" {
		if a.Users, err = p.UserList(); err != nil {
			return nil, err
		}
		if a.Organizations, err = p.OrganizationList(); err != nil {
			return nil, err
		}
		if cfg.CompletionWait >= 0 {
			a.completer = newCompleter(a.Users, cmp.Or(cfg.CompletionWait, time.Second), a.log)
		}
	}
	a.life, a.end = context.WithCancelCause(ctx)
	if err := a.sessions(store, cfg); err != nil {
		a.end(err)
		return nil, err
	}
	vc := jwtverify.Config{Issuers: []jwtverify.Issuer{p.Issuer()}, Logger: cfg.Logger,
		MeterProvider: cfg.MeterProvider, TracerProvider: cfg.TracerProvider}
	if a.Sessions != nil {
		vc.Sessions = a.Sessions // a nil *Set would be a non-nil SessionChecker
	}
	a.Verifier, err = jwtverify.New(a.life, vc)
	if err != nil {
		a.end(err)
		a.closeSessions()
		return nil, err
	}
	if err := a.wire(store, cfg); err != nil {
		a.Close()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// sessions sets App.Sessions, the Provider's Config.Sessions and, with a
// secret key, App.SessionStatus: Config.Sessions if set, else a Set Wire
// makes over the store if it implements sessions.Store (New waits for
// its first read, at most SetupConfig.EndedSessions.StartupWait).
func (a *App) sessions(store usersync.Store, cfg SetupConfig) error {
	a.Sessions = cfg.Config.Sessions
	if a.Sessions == nil {
		sc := cfg.EndedSessions
		if ss, ok := store.(sessions.Store); ok && sc.Store == nil {
			sc.Store = ss
		}
		if sc.Store != nil {
			if sc.Logger == nil {
				sc.Logger = cfg.Logger
			}
			if sc.MeterProvider == nil {
				sc.MeterProvider = cfg.MeterProvider
			}
			// Until Close: see App.Sessions.
			set, err := sessions.New(context.WithoutCancel(a.life), sc)
			if err != nil {
				return err
			}
			a.Sessions, a.ownSet = set, true
		}
	}
	a.Provider.cfg.Sessions = a.Sessions // before the webhook's first delivery
	if a.Provider.secretKey == "" {
		return nil
	}
	ssc := cfg.SessionStatus
	if ssc.Sessions == nil {
		ssc.Sessions = a.Sessions
	}
	if ssc.ErrorHandler == nil {
		ssc.ErrorHandler = cfg.ErrorHandler
	}
	if ssc.Logger == nil {
		ssc.Logger = cfg.Logger
	}
	var err error
	if a.SessionStatus, err = a.Provider.SessionStatus(ssc); err != nil {
		a.closeSessions()
	}
	return err
}

// closeSessions closes App.Sessions if Wire made it.
func (a *App) closeSessions() {
	if a.ownSet {
		a.Sessions.Close()
	}
}

// wire builds the parts over the verifier.
func (a *App) wire(store usersync.Store, cfg SetupConfig) (err error) {
	sc := usersync.Config{Store: store, Extractor: a.Verifier, ErrorHandler: cfg.ErrorHandler, OnChange: cfg.OnChange, Logger: cfg.Logger}
	if a.completer != nil {
		sc.CompleteUser = a.completer.complete
	}
	if a.Sessions != nil {
		sc.Sessions = a.Sessions
	}
	if a.Syncer, err = usersync.New(sc); err != nil {
		return err
	}
	if a.completer != nil {
		a.completer.syncer = a.Syncer
	}
	if a.Webhook, err = usersync.NewWebhookHandler(a.Syncer, a.Provider, usersync.WebhookConfig{Logger: cfg.Logger,
		MeterProvider: cfg.MeterProvider, TracerProvider: cfg.TracerProvider}); err != nil {
		return err
	}
	if _, leases := store.(lease.Store); a.Users != nil && (leases || cfg.ReconcileEvery > 0) {
		rc := cfg.Reconcile
		rc.Syncer, rc.Source = a.Syncer, a.Users
		shared(&rc.Logger, &rc.MeterProvider, &rc.TracerProvider, cfg)
		if a.Reconciler, err = reconcile.New(rc); err != nil {
			return err
		}
	}
	if a.Organizations != nil && a.Orgs != nil {
		if _, leases := a.Orgs.Store().(lease.Store); leases || cfg.ReconcileEvery > 0 {
			rc := cfg.ReconcileOrganizations
			rc.Syncer, rc.Source = a.Orgs, a.Organizations
			if rc.Holder == "" {
				rc.Holder = cfg.Reconcile.Holder
			}
			shared(&rc.Logger, &rc.MeterProvider, &rc.TracerProvider, cfg)
			if a.OrgReconciler, err = reconcile.NewOrganizations(rc); err != nil {
				return err
			}
		}
	}
	if fs, ok := store.(feed.Store); ok {
		fc := cfg.Feed
		fc.Store = fs
		shared(&fc.Logger, &fc.MeterProvider, &fc.TracerProvider, cfg)
		if a.Feed, err = feed.New(fc); err != nil {
			return err
		}
	}
	return nil
}

// shared sets a part's logger and providers to cfg's where they are nil.
func shared(log **slog.Logger, mp *metric.MeterProvider, tp *trace.TracerProvider, cfg SetupConfig) {
	if *log == nil {
		*log = cfg.Logger
	}
	if *mp == nil {
		*mp = cfg.MeterProvider
	}
	if *tp == nil {
		*tp = cfg.TracerProvider
	}
}

// Run runs the App's background work until ctx ends or Close is called:
// the change feed's consumers (register them with Feed.Handle first), a
// reconcile every ReconcileEvery, and the completion of the users that
// session tokens create. Then it stops all of it, the verifier's key
// refreshes too (Verify keeps the keys it has: let the server finish its
// requests), but not the reads of the ended sessions (App.Sessions), which
// go on until Close, and returns once everything has stopped. It returns ctx's
// error; nil if Close stopped it; the error of Wire's ctx if that ended
// first. Run runs once: a second call fails with an error wrapping
// usersync.ErrInvalid.
func (a *App) Run(ctx context.Context) error {
	a.mu.Lock()
	ran := a.ran
	a.ran = true
	a.mu.Unlock()
	if ran {
		return fmt.Errorf("%w: clerk: App.Run called twice", usersync.ErrInvalid)
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.life, cancel)() // Close ends Run
	var wg sync.WaitGroup
	if a.Feed != nil {
		wg.Go(func() {
			if err := a.Feed.Run(ctx); err != nil && ctx.Err() == nil {
				a.log.ErrorContext(ctx, "clerk: the change feed stopped", "err", err)
			}
		})
	}
	if a.Reconciler != nil && a.every > 0 {
		wg.Go(func() { a.Reconciler.RunEvery(ctx, a.every) }) // logs its runs' failures
	}
	if a.OrgReconciler != nil && a.every > 0 {
		wg.Go(func() { a.OrgReconciler.RunEvery(ctx, a.every) }) // logs its runs' failures
	}
	if a.completer != nil {
		wg.Go(func() { a.completer.run(ctx) })
	}
	<-ctx.Done()
	wg.Wait()
	a.stop() // not the ended sessions: the server may still be finishing its requests
	if err := parent.Err(); err != nil {
		return err
	}
	if cause := context.Cause(a.life); !errors.Is(cause, errClosed) {
		return cause
	}
	return nil
}

// Close stops the App's background work: the verifier's key refreshes
// (Verify keeps the keys it has), the completion of users, the reads of
// the ended sessions of a Sessions Wire made (which, stale a second
// later, then refuses every identity with 503: close the App after the
// server has finished its requests), and Run, if it runs (Run returns once
// all of it has stopped). Close is safe to call more than once, and
// returns nil.
func (a *App) Close() error {
	a.stop()
	a.closingSessions.Do(a.closeSessions) // last: the parts stop stops use it
	return nil
}

// stop stops the App's background work but the reads of the ended
// sessions: what Run stops when it returns.
func (a *App) stop() {
	a.end(errClosed)
	a.closing.Do(func() {
		if a.completer != nil {
			a.completer.stop()
		}
		a.Verifier.Close()
	})
}

// Setup wires usersync for one Clerk instance as Wire does, and returns
// the Syncer and the webhook handler only. With no App, there is no Run:
// it completes no user and runs no reconcile (CompletionWait and
// ReconcileEvery are ignored), and the verifier's key refreshes and the
// reads of the ended sessions end with ctx (after which the ended
// sessions refuse every identity with 503 once stale: see App.Sessions). Wire also gives the verifier,
// the Backend API's user list, the strict mode, the reconciler and the
// feed runner, and runs their background work.
//
// For any other setting, build the parts yourself: New, then
// jwtverify.New with Provider.Issuer, usersync.New and
// usersync.NewWebhookHandler.
func Setup(ctx context.Context, store usersync.Store, cfg SetupConfig) (*usersync.Syncer, http.Handler, error) {
	cfg.CompletionWait, cfg.ReconcileEvery = -1, 0
	a, err := Wire(ctx, store, cfg)
	if err != nil {
		return nil, nil, err
	}
	context.AfterFunc(ctx, func() { a.Close() }) // no App to close: ctx ends it all
	return a.Syncer, a.Webhook, nil
}
