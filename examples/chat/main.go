// Command chat is a chat app on usersync: messages with their authors,
// "deleted user" after a delete, a room per Clerk organization for its
// members (package orgs), a per-user sent count, the current-user
// endpoints, the Clerk webhook, a change-feed consumer that erases a
// deleted user's messages, and GET /metrics (usersync's metrics through the
// OpenTelemetry SDK and its Prometheus exporter).
//
//	go run ./examples/chat            # dev mode, SQLite in chat.db
//
// See the README for the environment variables (CLERK_ISSUER and friends
// for a real Clerk instance, DATABASE_URL for PostgreSQL or MySQL).
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/internal/dburl"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/sqlstore"
)

// config is the app's environment.
type config struct {
	addr, databaseURL, table                    string
	issuer, jwksURL, jwtKey, audience, azp, key string
	secrets, secretKey, apiURL, reconcileEvery  string
	replica                                     string
	maxStale                                    time.Duration // the ended sessions' MaxStale; 0: the default, 1 s (tests lengthen it)
}

// Format prints the config with every verb, its secrets (webhook secrets,
// the secret key, a password in DATABASE_URL) redacted.
func (c config) Format(f fmt.State, verb rune) {
	type plain config
	if c.secrets != "" {
		c.secrets = "[redacted]"
	}
	if c.secretKey != "" {
		c.secretKey = "[redacted]"
	}
	c.databaseURL = redactURL(c.databaseURL)
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(c))
}

// LogValue logs what Format prints.
func (c config) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%+v", c)) }

// redactURL hides the passwords of a database URL: postgres://u:p@h/db,
// a MySQL DSN after mysql:// (u:p@tcp(h)/db), and a password=...
// parameter (PostgreSQL's password and sslpassword).
func redactURL(s string) string {
	s = passwordParam.ReplaceAllString(s, "${1}[redacted]")
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s // an SQLite path
	}
	at := strings.LastIndex(rest, "@")
	user, _, hasPassword := strings.Cut(rest[:max(at, 0)], ":")
	if at < 0 || !hasPassword {
		return s
	}
	return scheme + "://" + user + ":[redacted]" + rest[at:]
}

// passwordParam matches the value of a password parameter of a URL.
var passwordParam = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&]*`)

func configFromEnv() config {
	get := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	return config{
		addr:        get("USERSYNC_ADDR", "localhost:8080"),
		databaseURL: get("DATABASE_URL", "file:chat.db"),
		table:       get("USERSYNC_TABLE", "users"),
		issuer:      os.Getenv("CLERK_ISSUER"),
		jwksURL:     os.Getenv("CLERK_JWKS_URL"),
		jwtKey:      os.Getenv("CLERK_JWT_KEY"),
		audience:    os.Getenv("CLERK_AUDIENCE"),
		azp:         os.Getenv("CLERK_AUTHORIZED_PARTIES"),
		key:         os.Getenv("CLERK_PUBLISHABLE_KEY"),
		secrets:     os.Getenv("CLERK_WEBHOOK_SECRET"),
		secretKey:   os.Getenv("CLERK_SECRET_KEY"),
		apiURL:      os.Getenv("CLERK_API_URL"),
		// A Go duration; 0 reconciles only at start.
		reconcileEvery: get("USERSYNC_RECONCILE_EVERY", "6h"),
		// A stable name of this replica, unique among the live ones (a
		// pod's name): a restart takes the dead process's leases back at
		// once. Unset: each process is a new holder, and waits for them.
		replica: os.Getenv("USERSYNC_REPLICA"),
	}
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, configFromEnv(), log); err != nil {
		log.Error("chat: " + err.Error())
		os.Exit(1)
	}
}

// checkDevMode refuses a configuration that would run dev mode (which
// issues tokens to anyone) by accident: without CLERK_ISSUER, but with
// something that only a real deployment sets, or listening beyond
// loopback.
func checkDevMode(cfg config) error {
	if cfg.issuer != "" {
		return nil
	}
	for name, v := range map[string]string{"CLERK_WEBHOOK_SECRET": cfg.secrets, "CLERK_PUBLISHABLE_KEY": cfg.key, "CLERK_SECRET_KEY": cfg.secretKey} {
		if v != "" {
			return fmt.Errorf("CLERK_ISSUER is not set, but %s is: refusing to start in dev mode, which issues tokens to anyone. Set CLERK_ISSUER to your Clerk Frontend API URL", name)
		}
	}
	if !loopback(cfg.addr) {
		return fmt.Errorf("CLERK_ISSUER is not set and USERSYNC_ADDR %q is not a loopback address: refusing to serve dev mode, which issues tokens to anyone, beyond this machine. Set CLERK_ISSUER, or listen on localhost", cfg.addr)
	}
	return nil
}

// loopback reports whether a listen address stays on this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// run serves the app until ctx ends, then shuts down gracefully.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := checkDevMode(cfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	a, cleanup, err := newApp(ctx, cfg, base, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer cleanup()
	srv := &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// The address bound, not USERSYNC_ADDR: with port 0 the kernel's
	// choice. The binary's tests read it from this line.
	log.Info("chat: listening", "url", base)
	refused := make(chan error, 1)
	defer a.reconcileInBackground(ctx, refused)()
	defer a.consumeInBackground(ctx)()
	var failed error
	select {
	case err := <-errc:
		return err
	case failed = <-refused:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log.Info("chat: shutting down")
	return cmp.Or(failed, srv.Shutdown(shutdown))
}

// newApp wires the store, the Clerk instance, the verifier, the syncer and
// the webhook. base is the server's own URL, the issuer of dev mode.
func newApp(ctx context.Context, cfg config, base string, log *slog.Logger) (*app, func(), error) {
	obs, err := newObservability()
	if err != nil {
		return nil, nil, err
	}
	store, msgs, closeDB, err := openStore(ctx, cfg.databaseURL, cfg.table, obs)
	if err != nil {
		obs.shutdown(ctx)
		return nil, nil, err
	}
	a := &app{msgs: msgs, log: log, clerkKey: cfg.key, obs: obs, replica: cfg.replica}
	fail := func(err error) (*app, func(), error) {
		if a.verifier != nil {
			a.verifier.Close()
		}
		if a.ended != nil {
			a.ended.Close()
		}
		closeDB()
		obs.shutdown(ctx)
		return nil, nil, err
	}

	cc := clerk.Config{Issuer: cfg.issuer, JWKSURL: cfg.jwksURL, PublicKeyPEM: cfg.jwtKey, SecretKey: cfg.secretKey, APIURL: cfg.apiURL, Logger: log}
	if cfg.azp != "" {
		cc.AuthorizedParties = strings.Split(cfg.azp, ",")
	}
	if cfg.secrets != "" {
		cc.WebhookSecrets = strings.Split(cfg.secrets, ",")
	}
	if cfg.issuer == "" {
		if a.dev, err = newDevIssuer(base); err != nil {
			return fail(err)
		}
		cc = clerk.Config{Issuer: base, PublicKeyPEM: a.dev.publicKeyPEM(), WebhookSecrets: cc.WebhookSecrets, Logger: log}
		log.Warn("chat: DEV MODE: CLERK_ISSUER is not set, so this server issues its own tokens to anyone. Never expose it.", "issuer", base)
		if len(cc.WebhookSecrets) == 0 {
			key := make([]byte, 32)
			rand.Read(key)
			cc.WebhookSecrets = []string{"whsec_" + base64.StdEncoding.EncodeToString(key)}
			log.Warn("chat: DEV MODE: generated a webhook signing secret", "CLERK_WEBHOOK_SECRET", cc.WebhookSecrets[0])
		}
	} else if len(cc.WebhookSecrets) == 0 {
		return fail(errors.New("CLERK_WEBHOOK_SECRET is required with CLERK_ISSUER"))
	}
	// The instance that newApp asks for its issuer and its users' list;
	// wire makes the one of the webhooks, with the organizations' Syncer.
	a.newInstance = func(members *orgs.Syncer, ended *sessions.Set) (*clerk.Provider, error) {
		c := cc
		c.Organizations, c.Sessions = members, ended
		return clerk.New(c)
	}
	instance, err := a.newInstance(nil, nil)
	if err != nil {
		return fail(err)
	}
	issuer := instance.Issuer()
	if cfg.audience != "" {
		issuer.Audiences = []string{cfg.audience}
	}
	a.issuer = issuer.URL
	// The sessions that ended, on any replica: refused within 100 ms
	// (its Poll), or every token is refused with 503 while the store
	// cannot be read for a second. It reads until cleanup, which comes
	// after the server's Shutdown, not until ctx ends.
	if a.ended, err = sessions.New(context.WithoutCancel(ctx), sessions.Config{Store: store, MaxStale: cfg.maxStale, Logger: log, MeterProvider: obs.meters}); err != nil {
		return fail(err)
	}
	a.verifier, err = jwtverify.New(ctx, jwtverify.Config{
		Issuers: []jwtverify.Issuer{issuer}, Logger: log,
		MeterProvider: obs.meters, TracerProvider: obs.tracers,
	})
	if err != nil {
		return fail(err)
	}
	a.instance = instance
	if cfg.secretKey != "" {
		if a.every, err = time.ParseDuration(cfg.reconcileEvery); err != nil || a.every < 0 {
			return fail(fmt.Errorf("USERSYNC_RECONCILE_EVERY %q is not a duration of 0 or more (6h, 30m; 0 reconciles only at start)", cfg.reconcileEvery))
		}
		if a.users, err = instance.UserList(); err != nil {
			return fail(err)
		}
		if a.orgList, err = instance.OrganizationList(); err != nil {
			return fail(err)
		}
	}
	if err := a.wire(store); err != nil {
		return fail(err)
	}
	return a, func() { a.verifier.Close(); a.ended.Close(); closeDB(); obs.shutdown(context.Background()) }, nil
}

// wire builds the syncer and the organizations' syncer over store, and
// the webhook handler over both: it applies the user.* events and the
// organization.* and organizationMembership.* ones.
func (a *app) wire(store chatStore) (err error) {
	if a.syncer, err = usersync.New(usersync.Config{Store: store, Extractor: a.verifier, Sessions: a.ended, Realm: "chat", ErrorHandler: errorJSON, Logger: a.log}); err != nil {
		return err
	}
	a.store = store
	if a.members, err = orgs.New(orgs.Config{Store: store, ErrorHandler: orgErrorJSON, Logger: a.log}); err != nil {
		return err
	}
	if a.instance, err = a.newInstance(a.members, a.ended); err != nil {
		return err
	}
	mp, tp := a.obs.meters, a.obs.tracers
	if a.webhook, err = usersync.NewWebhookHandler(a.syncer, a.instance, usersync.WebhookConfig{Logger: a.log, MeterProvider: mp, TracerProvider: tp}); err != nil {
		return err
	}
	if a.users != nil {
		if a.reconciler, err = reconcile.New(reconcile.Config{Syncer: a.syncer, Source: a.users, Holder: a.replica, Logger: a.log, MeterProvider: mp, TracerProvider: tp}); err != nil {
			return err
		}
	}
	if a.orgList != nil {
		if a.orgReconciler, err = reconcile.NewOrganizations(reconcile.OrganizationConfig{Syncer: a.members, Source: a.orgList, Holder: a.replica, Logger: a.log, MeterProvider: mp, TracerProvider: tp}); err != nil {
			return err
		}
	}
	if a.feed, err = feed.New(feed.Config{Store: store, Holder: a.replica, Logger: a.log, LeaseTTL: a.feedLease, MeterProvider: mp, TracerProvider: tp}); err != nil {
		return err
	}
	return a.feed.Handle("chat.erase-messages", a.eraseMessages)
}

// eraseMessages is the chat's consumer of the change feed: when a user is
// deleted, the bodies of their messages are erased. The feed delivers
// every deletion at least once, across crashes and replicas, and erasing
// twice changes nothing.
func (a *app) eraseMessages(ctx context.Context, c usersync.Change) error {
	if c.Outcome != usersync.Deleted {
		return nil
	}
	return a.msgs.erase(ctx, c.UserID)
}

// consumeInBackground runs the change feed's consumers until ctx ends.
// The returned function stops them and waits for them to stop.
func (a *app) consumeInBackground(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.feed.Run(ctx)
	}()
	return func() { cancel(); <-done }
}

// reconcileInBackground reconciles the users of the Backend API, and its
// organizations with their memberships, once now and then every a.every,
// if CLERK_SECRET_KEY is set, until ctx ends. The returned function stops
// both and waits for them to stop. A start-up reconcile that finds
// CLERK_SECRET_KEY to be another instance's than CLERK_ISSUER's is a
// configuration error: it is sent on refused, and the app stops.
func (a *app) reconcileInBackground(ctx context.Context, refused chan<- error) (stop func()) {
	if a.reconciler == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	background := func(what string, run func(context.Context) error, runEvery func(context.Context, time.Duration) error) {
		defer func() { done <- struct{}{} }()
		// Run logs its own summary and failures.
		err := run(ctx)
		switch {
		case errors.Is(err, clerk.ErrWrongInstance):
			select {
			case refused <- fmt.Errorf("CLERK_SECRET_KEY is not the secret key of CLERK_ISSUER's instance: refusing to run with it, nothing written: %w", err):
			default: // the other reconcile said so
			}
			return
		case err != nil && ctx.Err() == nil && !errors.Is(err, reconcile.ErrRunning):
			a.log.Warn("chat: the reconcile of the "+what+" at start failed; webhooks still flow, and the next reconcile heals", "next_in", a.every)
		}
		if a.every <= 0 {
			return
		}
		t := time.NewTimer(a.every)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Then once per interval, whichever replica sweeps.
		runEvery(ctx, a.every)
	}
	go background("users", func(ctx context.Context) error { _, err := a.reconciler.Run(ctx); return err }, a.reconciler.RunEvery)
	n := 1
	if a.orgReconciler != nil {
		n++
		go background("organizations", func(ctx context.Context) error { _, err := a.orgReconciler.Run(ctx); return err }, a.orgReconciler.RunEvery)
	}
	return func() {
		cancel()
		for range n {
			<-done
		}
	}
}

// openStore opens the users store, on table, and the messages table for a
// DATABASE_URL, migrating both.
func openStore(ctx context.Context, url, table string, obs *observability) (chatStore, messages, func(), error) {
	if url == "memory:" {
		return memstore.New(), &memMessages{}, func() {}, nil
	}
	db, dialect, err := dburl.Open(url)
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := sqlstore.New(db, sqlstore.Config{Dialect: dialect, Table: table, MeterProvider: obs.meters, TracerProvider: obs.tracers})
	if err == nil {
		err = store.Migrate(ctx)
	}
	if errors.Is(err, usersync.ErrInvalid) {
		// Most likely the app's own users table: name the chat's fix.
		err = fmt.Errorf("%w (set USERSYNC_TABLE=clerk_users)", err)
	}
	var msgs *sqlMessages
	if err == nil {
		msgs = &sqlMessages{db: db, d: dialect, users: store.Table()}
		err = msgs.migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, nil, nil, fmt.Errorf("migrate %s database: %w", dialect, err)
	}
	return store, msgs, func() { store.Close(); db.Close() }, nil
}
