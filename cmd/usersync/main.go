// Command usersync runs usersync's operator tasks on an app's database,
// and a fake Clerk instance for development:
//
//	usersync migrate [-table name]      apply the store's migrations
//	usersync reconcile [-table name]    import and heal the users and organizations of a Clerk instance
//	usersync fake-clerk [-addr host:port] [-users file] [-webhook-url url]
//	                                    serve a fake Clerk instance
//
// migrate and reconcile read DATABASE_URL (postgres://...,
// mysql://<go-sql-driver DSN>, or the path of an SQLite file) and the users
// table from -table, else USERSYNC_TABLE, else "users" (optionally
// qualified: auth.users). To reconcile, they read CLERK_ISSUER (the
// instance's Frontend API URL), CLERK_SECRET_KEY and, optionally,
// CLERK_JWT_KEY (the instance's PEM public key) or CLERK_JWKS_URL (default
// CLERK_ISSUER/.well-known/jwks.json), and CLERK_API_URL. Run
// "usersync <command> -h" for its flags.
//
// reconcile migrates, checks that CLERK_SECRET_KEY is the key of
// CLERK_ISSUER's instance (its signing keys are the issuer's) before any
// user is written, pages through the instance's users with a progress bar
// on a terminal (progress lines otherwise), and prints a summary. After a
// complete run of the users, it reconciles the instance's organizations
// and their memberships the same way (-orgs=false leaves them out), and
// prints their summary. It exits 0 when the runs were complete; 3 when one
// refused to write: a secret key of another instance, a list that shares
// almost nothing with the store, or more deletions than the mass-delete
// guard allows (run again with -allow-mass-delete once checked); 4 when
// another replica is reconciling; and 1 on any other failure.
//
// fake-clerk serves a fake Clerk instance (package clerk/clerkfake) on
// -addr (default 127.0.0.1:0, any free port) until interrupted: the
// signing keys of its issuer, the users endpoints of its Backend API,
// loaded from -users (a JSON array of Clerk user objects), session tokens
// on POST /fake/tokens?sub=user_x, and webhooks signed as Svix does, sent
// to -webhook-url on POST /fake/send {"type": ..., "user": {...}} (and for
// every user of -users at start with -send-users). It prints the
// CLERK_ISSUER, CLERK_API_URL, CLERK_SECRET_KEY and CLERK_WEBHOOK_SECRET to
// give the app; -url sets the issuer's URL when the app reaches the fake
// at another address than -addr (under docker-compose), -secret-key and
// -webhook-secret fix the secrets.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/internal/dburl"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/reconcile"
	"github.com/usersync/usersync/sqlstore"
)

const usage = `usage: usersync <command> [flags]

commands:
  migrate     apply the store's migrations to DATABASE_URL
  reconcile   import and heal the users and organizations of the Clerk
              instance CLERK_ISSUER (with CLERK_SECRET_KEY) into DATABASE_URL
  fake-clerk  serve a fake Clerk instance for development: session tokens,
              the Backend API's users, signed webhooks

Run "usersync <command> -h" for a command's flags.
`

// Exit codes of reconcile beyond 0, 1 and 2 (usage).
const (
	exitRefused = 3
	exitRunning = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run runs the command of args and returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "migrate":
		err = migrate(ctx, args[1:], getenv, stdout, stderr)
	case "reconcile":
		err = reconcileCmd(ctx, args[1:], getenv, stdout, stderr)
	case "fake-clerk":
		err = fakeClerk(ctx, args[1:], getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "usersync: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "usersync %s: %v\n", args[0], err)
	switch {
	case errors.Is(err, clerk.ErrWrongInstance):
		fmt.Fprintln(stderr, "usersync reconcile: nothing written: set CLERK_SECRET_KEY to the secret key of CLERK_ISSUER's instance")
		return exitRefused
	case errors.Is(err, reconcile.ErrMassDelete), errors.Is(err, reconcile.ErrForeignList):
		fmt.Fprintln(stderr, "usersync reconcile: the refused run deleted nothing: check that CLERK_SECRET_KEY belongs to CLERK_ISSUER's instance, then run again with -allow-mass-delete")
		return exitRefused
	case errors.Is(err, reconcile.ErrRunning):
		return exitRunning
	}
	return 1
}

// errUsage reports bad flags, already explained on stderr.
var errUsage = errors.New("usage")

// common are the flags of the commands on DATABASE_URL.
type common struct {
	table string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.table, "table", "", "the users table, optionally qualified: auth.users (default $USERSYNC_TABLE, else users)")
}

// tableName returns the users table: -table, else USERSYNC_TABLE, else
// "users".
func (c *common) tableName(getenv func(string) string) string {
	return cmp.Or(c.table, getenv("USERSYNC_TABLE"), "users")
}

// parse parses args into fs, mapping its errors to errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "usersync %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return errUsage
	}
	return nil
}

// openStore opens and migrates the store of DATABASE_URL.
func openStore(ctx context.Context, getenv func(string) string, table string) (*sqlstore.Store, func(), error) {
	url := getenv("DATABASE_URL")
	if url == "" {
		return nil, nil, errors.New("DATABASE_URL is not set (postgres://..., mysql://<DSN>, or an SQLite file)")
	}
	db, dialect, err := dburl.Open(url)
	if err != nil {
		return nil, nil, err
	}
	store, err := sqlstore.New(db, sqlstore.Config{Dialect: dialect, Table: table})
	if err != nil {
		db.Close()
		return nil, nil, tableError(err)
	}
	if err := store.Migrate(ctx); err != nil {
		store.Close()
		db.Close()
		return nil, nil, tableError(fmt.Errorf("%s database: %w", dialect, err))
	}
	return store, func() { store.Close(); db.Close() }, nil
}

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: usersync migrate [-table name]\n\nApplies the store's migrations to DATABASE_URL; a no-op when it is up to date.\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	store, closeStore, err := openStore(ctx, getenv, c.tableName(getenv))
	if err != nil {
		return err
	}
	defer closeStore()
	fmt.Fprintf(stdout, "usersync migrate: %s is up to date\n", store.Table())
	return nil
}

func reconcileCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	allow := fs.Bool("allow-mass-delete", false, "delete however many users (organizations, memberships) the instance no longer has")
	share := fs.Float64("max-delete-share", 0.10, "the share of live users (organizations, memberships) a run may delete without -allow-mass-delete (and more than -max-delete-count)")
	count := fs.Int("max-delete-count", 10, "how many users (organizations, memberships) a run may delete whatever their share")
	withOrgs := fs.Bool("orgs", true, "after the users, reconcile the instance's organizations and their memberships")
	quiet := fs.Bool("q", false, "no progress, only the summary and errors")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: usersync reconcile [flags]

Imports the users of the Clerk instance CLERK_ISSUER (listed with
CLERK_SECRET_KEY from CLERK_API_URL, default `+clerk.DefaultAPIURL+`) into
DATABASE_URL, heals what webhooks missed, and deletes the users the instance
no longer has; then, unless -orgs=false, its organizations and their
memberships. Safe to run again and beside webhooks: every write is
versioned by the user's (organization's, membership's) updated_at. It
refuses, before writing anything, a secret key of another instance than
CLERK_ISSUER's (checked against CLERK_JWT_KEY, or the keys of
CLERK_JWKS_URL, default the issuer's).

`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	issuer, key := getenv("CLERK_ISSUER"), getenv("CLERK_SECRET_KEY")
	if issuer == "" || key == "" {
		return errors.New("CLERK_ISSUER (the instance's Frontend API URL) and CLERK_SECRET_KEY (sk_...) are required")
	}
	instance, err := clerk.New(clerk.Config{
		Issuer: issuer, SecretKey: key, APIURL: getenv("CLERK_API_URL"),
		PublicKeyPEM: getenv("CLERK_JWT_KEY"), JWKSURL: getenv("CLERK_JWKS_URL"),
	})
	if err != nil {
		return err
	}
	list, err := instance.UserList()
	if err != nil {
		return fmt.Errorf("CLERK_API_URL, CLERK_JWT_KEY or CLERK_JWKS_URL: %w", err)
	}
	store, closeStore, err := openStore(ctx, getenv, c.tableName(getenv))
	if err != nil {
		return err
	}
	defer closeStore()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	syncer, err := usersync.New(usersync.Config{Store: store, Logger: log})
	if err != nil {
		return err
	}
	p := newProgress(stderr, *quiet)
	// 0 on the command line means none; in reconcile.Config, the default.
	if *share == 0 {
		*share = -1
	}
	if *count == 0 {
		*count = -1
	}
	r, err := reconcile.New(reconcile.Config{
		Syncer: syncer, Source: list,
		MaxDeleteShare: *share, MaxDeleteCount: *count, AllowMassDelete: *allow,
		OnProgress: p.update, Logger: log,
	})
	if err != nil {
		return err
	}
	report, err := r.Run(ctx)
	p.done()
	fmt.Fprintln(stdout, summary(report))
	if err != nil || !*withOrgs {
		return err
	}
	return reconcileOrgs(ctx, instance, store, reconcile.OrganizationConfig{
		MaxDeleteShare: *share, MaxDeleteCount: *count, AllowMassDelete: *allow, Logger: log,
	}, stdout)
}

// reconcileOrgs reconciles the organizations of instance into store, with
// cfg's guard and logger, and prints the summary.
func reconcileOrgs(ctx context.Context, instance *clerk.Provider, store *sqlstore.Store, cfg reconcile.OrganizationConfig, stdout io.Writer) error {
	list, err := instance.OrganizationList()
	if err != nil {
		return fmt.Errorf("the organizations: %w", err)
	}
	syncer, err := orgs.New(orgs.Config{Store: store, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	cfg.Syncer, cfg.Source = syncer, list
	r, err := reconcile.NewOrganizations(cfg)
	if err != nil {
		return err
	}
	report, err := r.Run(ctx)
	fmt.Fprintln(stdout, orgSummary(report))
	if err != nil {
		return fmt.Errorf("the organizations: %w", err)
	}
	return nil
}

// tableError names the flag and the variable of the store's Table in an
// error of a table usersync cannot take (ErrInvalid).
func tableError(err error) error {
	if errors.Is(err, usersync.ErrInvalid) {
		return fmt.Errorf("the table of -table or USERSYNC_TABLE: %w", err)
	}
	return err
}

// summary is the line that ends a reconcile.
func summary(r reconcile.Report) string {
	state := runState(r.Complete, len(r.Refused) > 0)
	took := r.Finished.Sub(r.Started).Round(time.Millisecond)
	s := fmt.Sprintf("usersync reconcile: %s in %v: %d listed of %d; created %d, updated %d, unchanged %d, deleted %d, skipped %d",
		state, took, r.Listed, r.Total, r.Created, r.Updated, r.Unchanged, r.Deleted, r.Skipped)
	if len(r.Refused) > 0 {
		s += fmt.Sprintf("; refused to delete %d", len(r.Refused))
	}
	return s
}

// runState says how a run ended, for its summary.
func runState(complete, refused bool) string {
	switch {
	case !complete:
		return "incomplete: nothing deleted"
	case refused:
		return "complete, deletions refused"
	}
	return "complete"
}

// orgSummary is the line that ends a reconcile of organizations.
func orgSummary(r reconcile.OrganizationReport) string {
	o, m := r.Organizations, r.Memberships
	took := r.Finished.Sub(r.Started).Round(time.Millisecond)
	s := fmt.Sprintf("usersync reconcile: organizations %s in %v: %d listed; created %d, updated %d, unchanged %d, deleted %d, skipped %d; memberships: %d listed; created %d, updated %d, unchanged %d, deleted %d, skipped %d",
		runState(r.Complete, len(o.Refused)+len(m.Refused) > 0), took,
		o.Listed, o.Created, o.Updated, o.Unchanged, o.Deleted, o.Skipped, m.Listed, m.Created, m.Updated, m.Unchanged, m.Deleted, m.Skipped)
	if len(o.Refused) > 0 {
		s += fmt.Sprintf("; refused to delete %d organizations", len(o.Refused))
	}
	if len(m.Refused) > 0 {
		s += fmt.Sprintf("; refused to delete %d memberships", len(m.Refused))
	}
	return s
}
