// Package sqlstore is a usersync.Store (with the change feed of feed.Store,
// the leases of lease.Store, the organizations of orgs.Store and the ended
// sessions of sessions.Store) over database/sql, for SQLite, PostgreSQL
// and MySQL 8 / MariaDB 10.6+.
//
// You open the *sql.DB with the driver you like; sqlstore imports none.
// Every write rule of usersync is one atomic SQL statement (an INSERT ...
// ON CONFLICT DO UPDATE ... WHERE, or ON DUPLICATE KEY UPDATE on MySQL), so
// the rules hold across goroutines, processes and app replicas sharing the
// database: versions order writes per field, a tombstone is the same row
// kept with its personal fields cleared (so foreign keys to users(id) stay
// valid and the key can never be inserted again), and concurrent first
// writes of one key make one row with one ID.
//
// The schema ships as embedded SQL (see Store.Schema and the package
// README). New never touches the database; call Migrate once at start.
//
// # Organizations
//
// Store also implements orgs.Store: organizations and memberships in
// <table>_organizations and <table>_memberships, which Migrate creates
// (upgrading an existing database in place), under the rules of package
// orgs. A write of them is one transaction that reads the rows it may
// change with a lock, decides by the rules, and writes the rows that
// change: a multi-row statement per 250 rows in the batches of a
// reconcile. Member, the request path's check, is one indexed read. The
// user's Delete ends the user's memberships in its transaction, as
// DeleteOrganization ends the organization's, and triggers put every
// change of them in the change feed (usersync.Change.Entity).
//
// # Ended sessions
//
// Store also implements sessions.Store: the endings of sessions, and of
// every session of a user, in <table>_ended_sessions, which Migrate
// creates. An ending is recorded once per key (issuer and session ID, or
// without one issuer and subject), and its RecordedAt is the database
// server's clock as its INSERT runs, not as its transaction began. The
// user's Delete records the ending of every session of the user it
// deletes, in its transaction, as the last statement before the commit.
//
// # SQLite
//
// SQLite needs settings that are easy to get wrong: WAL (readers do not
// block the writer), a busy timeout (writers wait for the lock instead of
// failing with "database is locked"), foreign keys on, and one writer
// connection. With modernc.org/sqlite, SQLiteDSN sets the first three:
//
//	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN("app.db"))
//	if err != nil { ... }
//	db.SetMaxOpenConns(1) // one connection: writers never contend in-process
//	store, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite})
//	if err != nil { ... }
//	if err := store.Migrate(ctx); err != nil { ... }
//
// # PostgreSQL and MySQL
//
//	db, err := sql.Open("pgx", "postgres://user@host/db")   // github.com/jackc/pgx/v5/stdlib
//	store, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.Postgres})
//
//	db, err := sql.Open("mysql", "user@tcp(host:3306)/db") // github.com/go-sql-driver/mysql
//	store, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.MySQL})
//
// Size the pool so that it keeps its connections: database/sql keeps only 2
// idle ones by default, so under concurrent load it closes and reopens
// connections all the time (in the package's pool benchmark, 16 clients of a
// webhook handler on PostgreSQL got 4.7x the throughput and a tenth of the
// p99 latency with the pool below):
//
//	db.SetMaxOpenConns(32)                  // per replica; replicas × this ≤ the server's connection limit
//	db.SetMaxIdleConns(32)                  // as many as open: keep them
//	db.SetConnMaxIdleTime(5 * time.Minute)  // shrink when traffic drops
//	db.SetConnMaxLifetime(30 * time.Minute) // MySQL: 3 minutes, below wait_timeout and proxies' timeouts
//
// # Retries
//
// Every statement is idempotent (writes are versioned), so when the database
// asks for a statement to be run again — a serialization failure or
// deadlock (PostgreSQL 40001, 40P01; MySQL 1213, 1205), which is also how a
// Galera cluster reports a certification conflict with a write committed on
// another node — the Store runs it again, up to Config.MaxAttempts times with
// a jittered backoff, honouring the context. The error that finally surfaces
// says how many attempts it took. Two errors of a Galera node are run
// again too: a trigger that MariaDB read half made, or whose parse it cut
// short, as it opened the table, before the statement changed anything
// (1064, "... has an error in its body", in the server's English
// messages); and a transaction that a brute-force abort ended under the
// Store's statements (see Galera below). On MySQL, a transaction that
// records ended sessions runs again if a count of its endings' keys, after
// its INSERT, finds one without a row: MariaDB's INSERT ... ON DUPLICATE
// KEY UPDATE can give a new row an AUTO_INCREMENT key a concurrent INSERT
// took, and keep that other row instead. Nothing else is retried.
//
// # Galera
//
// On a multi-master MariaDB Galera cluster, give every pool the session
// variable wsrep_sync_wait=7 (go-sql-driver/mysql takes it in the DSN,
// "user@tcp(node1:3306)/db?wsrep_sync_wait=7"): a read, update, delete or
// insert then waits until its node has applied every write the cluster
// committed before it, so a user stored through one node is read back
// through any other. Migrate may run on several nodes at once (MySQL's
// GET_LOCK only serialises the replicas of one node): a replica claims each
// migration in the migrations table, and the others wait until it is
// applied. MySQL's DDL commits statement by statement, so a migration that
// stopped midway runs again: a statement that fails because the very
// object it creates exists counts as done, and the schema the version
// needs is checked before the version is recorded (see Store.Migrate).
package sqlstore
