// Command chat is a chat app on usersync: messages with their authors,
// "deleted user" after a delete, a per-user sent count, the current-user
// endpoints and the Clerk webhook.
//
//	go run ./examples/chat            # dev mode, SQLite in chat.db
//
// See the README for the environment variables (CLERK_ISSUER and friends
// for a real Clerk instance, DATABASE_URL for PostgreSQL or MySQL).
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sqlstore"
)

// config is the app's environment.
type config struct {
	addr, databaseURL                           string
	issuer, jwksURL, jwtKey, audience, azp, key string
	secrets, secretKey                          string
}

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
		issuer:      os.Getenv("CLERK_ISSUER"),
		jwksURL:     os.Getenv("CLERK_JWKS_URL"),
		jwtKey:      os.Getenv("CLERK_JWT_KEY"),
		audience:    os.Getenv("CLERK_AUDIENCE"),
		azp:         os.Getenv("CLERK_AUTHORIZED_PARTIES"),
		key:         os.Getenv("CLERK_PUBLISHABLE_KEY"),
		secrets:     os.Getenv("CLERK_WEBHOOK_SECRET"),
		secretKey:   os.Getenv("CLERK_SECRET_KEY"),
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
	log.Info("chat: listening", "url", base)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log.Info("chat: shutting down")
	return srv.Shutdown(shutdown)
}

// newApp wires the store, the Clerk instance, the verifier, the syncer and
// the webhook. base is the server's own URL, the issuer of dev mode.
func newApp(ctx context.Context, cfg config, base string, log *slog.Logger) (*app, func(), error) {
	store, msgs, closeDB, err := openStore(ctx, cfg.databaseURL)
	if err != nil {
		return nil, nil, err
	}
	a := &app{msgs: msgs, log: log, clerkKey: cfg.key}
	fail := func(err error) (*app, func(), error) {
		if a.verifier != nil {
			a.verifier.Close()
		}
		closeDB()
		return nil, nil, err
	}

	cc := clerk.Config{Issuer: cfg.issuer, JWKSURL: cfg.jwksURL, PublicKeyPEM: cfg.jwtKey}
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
		cc = clerk.Config{Issuer: base, PublicKeyPEM: a.dev.publicKeyPEM(), WebhookSecrets: cc.WebhookSecrets}
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
	instance, err := clerk.New(cc)
	if err != nil {
		return fail(err)
	}
	issuer := instance.Issuer()
	if cfg.audience != "" {
		issuer.Audiences = []string{cfg.audience}
	}
	a.issuer = issuer.URL
	a.verifier, err = usersync.NewVerifier(ctx, usersync.VerifierConfig{
		Issuers: []usersync.Issuer{issuer}, Realm: "chat", ErrorHandler: errorJSON, Logger: log,
	})
	if err != nil {
		return fail(err)
	}
	a.instance = instance
	if err := a.wire(store); err != nil {
		return fail(err)
	}
	return a, func() { a.verifier.Close(); closeDB() }, nil
}

// wire builds the syncer over store and the webhook handler over the
// syncer.
func (a *app) wire(store usersync.Store) (err error) {
	if a.syncer, err = usersync.New(usersync.Config{Store: store, Verifier: a.verifier, Logger: a.log}); err != nil {
		return err
	}
	a.store = store
	a.webhook, err = usersync.NewWebhookHandler(a.syncer, a.instance, usersync.WebhookConfig{Logger: a.log})
	return err
}

// openStore opens the users store and the messages table for a
// DATABASE_URL, migrating both.
func openStore(ctx context.Context, url string) (usersync.Store, messages, func(), error) {
	if url == "memory:" {
		return memstore.New(), &memMessages{}, func() {}, nil
	}
	driver, dsn, dialect := "sqlite", sqlstore.SQLiteDSN(url), sqlstore.SQLite
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		driver, dsn, dialect = "pgx", url, sqlstore.Postgres
	case strings.HasPrefix(url, "mysql://"):
		driver, dsn, dialect = "mysql", strings.TrimPrefix(url, "mysql://"), sqlstore.MySQL
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	switch dialect {
	case sqlstore.SQLite:
		db.SetMaxOpenConns(1) // one writer: SQLite serialises writes anyway
	default:
		// Keep as many idle connections as open ones: database/sql's
		// default of 2 closes and reopens connections under load (4.7x
		// fewer webhooks per second in sqlstore's pool benchmark).
		db.SetMaxOpenConns(32)
		db.SetMaxIdleConns(32)
		db.SetConnMaxIdleTime(5 * time.Minute)
		db.SetConnMaxLifetime(30 * time.Minute)
		if dialect == sqlstore.MySQL {
			db.SetConnMaxLifetime(3 * time.Minute) // below the server's and proxies' idle timeouts
		}
	}
	store, err := sqlstore.New(db, sqlstore.Config{Dialect: dialect})
	if err == nil {
		err = store.Migrate(ctx)
	}
	msgs := &sqlMessages{db: db, d: dialect}
	if err == nil {
		err = msgs.migrate(ctx, store.Table())
	}
	if err != nil {
		db.Close()
		return nil, nil, nil, fmt.Errorf("migrate %s database: %w", dialect, err)
	}
	return store, msgs, func() { store.Close(); db.Close() }, nil
}
