package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
	"github.com/usersync/usersync/usersynctest"
)

// The tests of a multi-master MariaDB Galera cluster: three nodes, one
// pool (an app replica) on each. .ci/galera starts one on loopback and
// prints USERSYNC_GALERA_DSNS, the nodes' DSNs separated by commas.

// galera is the cluster of the tests, opened once per test binary.
var galera struct {
	mu  sync.Mutex
	dbs []*sql.DB
	err error // a node that did not answer for all of testdb.ConnectWait
}

// galeraNodes returns one pool per node of the cluster, or skips t.
//
// Every pool sets wsrep_sync_wait=7 on its sessions (the DSN parameter
// becomes a session variable): a read, update, delete or insert then waits
// until the node has applied every write the cluster committed before it,
// so a write on one node is seen by a read on any other — the "store, then
// me" flow of an app whose requests land on different replicas — and a
// lease released on one node is free on every other.
func galeraNodes(t testing.TB) []*sql.DB {
	t.Helper()
	env := os.Getenv("USERSYNC_GALERA_DSNS")
	if env == "" {
		t.Skip("USERSYNC_GALERA_DSNS is not set: skipping the Galera tests (run .ci/galera start and export its last line)")
	}
	galera.mu.Lock()
	defer galera.mu.Unlock()
	if galera.dbs == nil && galera.err == nil {
		var dbs []*sql.DB
		for i, dsn := range strings.Split(env, ",") {
			sep := "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
			db, err := testdb.Connect("mysql", dsn+sep+"wsrep_sync_wait=7")
			if err != nil {
				for _, db := range dbs {
					db.Close()
				}
				galera.err = fmt.Errorf("galera node %d: %w", i+1, err)
				break
			}
			db.SetMaxOpenConns(16)
			db.SetMaxIdleConns(16)
			dbs = append(dbs, db)
		}
		if galera.err == nil {
			galera.dbs = dbs
		}
	}
	if galera.err != nil {
		t.Fatal(galera.err)
	}
	if len(galera.dbs) < 3 {
		t.Fatalf("USERSYNC_GALERA_DSNS names %d nodes, want 3", len(galera.dbs))
	}
	return galera.dbs
}

// galeraRetries counts the statements the Galera tests' stores ran again,
// reported at the end of each test.
var galeraRetries atomic.Int64

// galeraStores migrates a fresh table on the first node and returns a
// store over it on every node. The table is dropped when t ends.
func galeraStores(t testing.TB) []*sqlstore.Store {
	return galeraStoresWith(t, nil)
}

// galeraStoresWith is galeraStores whose configuration of each node's
// store configure, if not nil, completes.
func galeraStoresWith(t testing.TB, configure func(node int, cfg *sqlstore.Config)) []*sqlstore.Store {
	t.Helper()
	nodes := galeraNodes(t)
	table := testdb.OwnSchema(t, nodes[0], sqlstore.MySQL) + ".users"
	var stores []*sqlstore.Store
	for i, db := range nodes {
		cfg := sqlstore.Config{Dialect: sqlstore.MySQL, Table: table}
		if configure != nil {
			configure(i, &cfg)
		}
		s, err := sqlstore.New(db, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			galeraRetries.Add(s.Retries())
			s.Close()
		})
		stores = append(stores, s)
	}
	return stores
}

// roundRobin is a Store whose consecutive calls go to the next node: the
// conformance suite's rules must hold whichever node answers.
type roundRobin struct {
	nodes []*sqlstore.Store
	next  atomic.Uint64
}

func (r *roundRobin) node() *sqlstore.Store {
	return r.nodes[(r.next.Add(1)-1)%uint64(len(r.nodes))]
}

func (r *roundRobin) Get(ctx context.Context, id string) (usersync.User, error) {
	return r.node().Get(ctx, id)
}

func (r *roundRobin) GetByTokenIdentifier(ctx context.Context, ti string) (usersync.User, error) {
	return r.node().GetByTokenIdentifier(ctx, ti)
}

func (r *roundRobin) GetMany(ctx context.Context, ids []string) (map[string]usersync.User, error) {
	return r.node().GetMany(ctx, ids)
}

func (r *roundRobin) List(ctx context.Context, after string, limit int) ([]usersync.User, error) {
	return r.node().List(ctx, after, limit)
}

func (r *roundRobin) Count(ctx context.Context) (int, error) { return r.node().Count(ctx) }

func (r *roundRobin) Upsert(ctx context.Context, w usersync.Write) (usersync.User, usersync.Outcome, error) {
	return r.node().Upsert(ctx, w)
}

func (r *roundRobin) Delete(ctx context.Context, w usersync.Write) (usersync.User, usersync.Outcome, error) {
	return r.node().Delete(ctx, w)
}

func (r *roundRobin) GetByExternalID(ctx context.Context, issuer, externalID string) (usersync.User, error) {
	return r.node().GetByExternalID(ctx, issuer, externalID)
}

func (r *roundRobin) UpsertBatch(ctx context.Context, ws []usersync.Write) ([]usersync.User, []usersync.Outcome, error) {
	return r.node().UpsertBatch(ctx, ws)
}

func (r *roundRobin) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	return r.node().AcquireLease(ctx, name, holder, ttl)
}

func (r *roundRobin) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error) {
	return r.node().RenewLease(ctx, name, holder, ttl, cursor)
}

func (r *roundRobin) ReleaseLease(ctx context.Context, name, holder string) error {
	return r.node().ReleaseLease(ctx, name, holder)
}

func (r *roundRobin) LeaseCursors(ctx context.Context, prefix string) (map[string]int64, error) {
	return r.node().LeaseCursors(ctx, prefix)
}

func (r *roundRobin) Changes(ctx context.Context, after int64, limit int) ([]usersync.Change, error) {
	return r.node().Changes(ctx, after, limit)
}

func (r *roundRobin) PruneChanges(ctx context.Context, through int64, before time.Time) (int, error) {
	return r.node().PruneChanges(ctx, through, before)
}

func TestGaleraConformance(t *testing.T) {
	galeraNodes(t)
	before := galeraRetries.Load()
	t.Cleanup(func() { t.Logf("Galera conformance: %d statements run again", galeraRetries.Load()-before) })
	usersynctest.TestStore(t, func(t *testing.T) usersync.Store {
		return &roundRobin{nodes: galeraStores(t)}
	})
}

// Concurrent first logins of one person on all three nodes: one row, every
// caller gets its ID, no caller sees an error (the certification conflicts
// of the losers are retried).
//
// "forced" forces the conflict: the first write to reach each node's hook
// waits there, its row inserted and not committed, until one has on every
// node; then all three go on to commit, and two must lose (a certification
// failure or a brute-force abort) and run again. "plain" is the same race
// without a hook, the path most apps run, whose conflicts are left to
// chance.
func TestGaleraConcurrentFirstWrites(t *testing.T) {
	for _, forced := range []bool{true, false} {
		t.Run(map[bool]string{true: "forced", false: "plain"}[forced], func(t *testing.T) {
			concurrentFirstWrites(t, forced)
		})
	}
}

func concurrentFirstWrites(t *testing.T, forced bool) {
	rec := telemetrytest.New(t)
	var held [3]atomic.Bool
	var arrived sync.WaitGroup
	arrived.Add(3)
	allHeld := make(chan struct{})
	go func() { arrived.Wait(); close(allHeld) }()
	defer func() { // a test that failed before all three arrived leaves no goroutine
		for i := range held {
			if held[i].CompareAndSwap(false, true) {
				arrived.Done()
			}
		}
	}()
	stores := galeraStoresWith(t, func(node int, cfg *sqlstore.Config) {
		cfg.MeterProvider, cfg.TracerProvider = rec.MeterProvider, rec.TracerProvider
		if !forced {
			return
		}
		cfg.OnWrite = func(ctx context.Context, _ *sql.Tx, _ usersync.Change) error {
			if !held[node].CompareAndSwap(false, true) {
				return nil
			}
			arrived.Done()
			select {
			case <-allHeld:
				return nil
			case <-time.After(time.Minute):
				return fmt.Errorf("node %d: the first writes of the other nodes never reached their hooks", node+1)
			}
		}
	})
	const perNode = 20
	var ids [3 * perNode]string
	var errs [3 * perNode]error
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ids {
		s := stores[i%3]
		wg.Go(func() {
			<-start
			w := usersync.Write{ID: fmt.Sprintf("id-%02d", i), Issuer: "https://issuer.test", Subject: "racer",
				TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", "racer"),
				Version:         usersync.Version(i + 1), Fields: usersync.FieldName, Profile: usersync.Profile{Name: fmt.Sprint("r", i)}, At: time.Now()}
			var u usersync.User
			u, _, errs[i] = s.Upsert(context.Background(), w)
			ids[i] = u.ID
		})
	}
	close(start)
	wg.Wait()
	for i := range ids {
		if errs[i] != nil {
			t.Fatalf("writer %d (node %d): %v", i, i%3+1, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("writer %d got ID %q, writer 0 %q", i, ids[i], ids[0])
		}
	}
	for n, s := range stores {
		if c, err := s.Count(context.Background()); err != nil || c != 1 {
			t.Fatalf("node %d counts %d users, %v; want 1", n+1, c, err)
		}
	}
	retries := int64(0)
	for _, s := range stores {
		retries += s.Retries()
	}
	t.Logf("%d concurrent first writes on 3 nodes: %d statements run again", len(ids), retries)
	if forced && retries < 2 {
		t.Fatalf("%d statements run again: the two writes that lost the forced conflict were not retried", retries)
	}
	if got := rec.Sum(t, "usersync.store.retries"); got != retries {
		t.Fatalf("usersync.store.retries = %d, but the stores ran %d statements again", got, retries)
	}
	if got := rec.Count(t, "usersync.store.operation.duration", attribute.String("operation", "upsert"), attribute.String("outcome", "ok")); got != uint64(len(ids)) {
		t.Fatalf("%d upserts measured, want %d", got, len(ids))
	}
}

// Three replicas, one per node, share a shuffled, duplicated event stream:
// every node ends in the in-order fold.
func TestGaleraReplicasConverge(t *testing.T) {
	stores := galeraStores(t)
	events := usersynctest.Stream(rand.New(rand.NewPCG(21, 22)), 60, 600)
	r := rand.New(rand.NewPCG(23, 24))
	stream := append([]usersynctest.Event(nil), events...)
	for range len(events) / 4 {
		stream = append(stream, events[r.IntN(len(events))])
	}
	r.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })
	var syncers []*usersync.Syncer
	for _, s := range stores {
		sy, err := usersync.New(usersync.Config{Store: s})
		if err != nil {
			t.Fatal(err)
		}
		syncers = append(syncers, sy)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 9 {
		s := syncers[w%3]
		wg.Go(func() {
			for i := w; i < len(stream); i += 9 {
				e := stream[i]
				var err error
				if e.Delete {
					_, _, err = s.Delete(ctx, usersynctest.StreamIssuer, e.Subject)
				} else {
					_, _, err = s.Upsert(ctx, usersync.Write{Issuer: usersynctest.StreamIssuer, Subject: e.Subject, Version: e.Version, Fields: e.Fields, Profile: e.Profile})
				}
				if err != nil && !errors.Is(err, usersync.ErrDeleted) {
					t.Errorf("replica %d: %v", w%3, err)
				}
			}
		})
	}
	wg.Wait()
	want := usersynctest.Fold(events)
	for i, s := range stores {
		if diff := usersynctest.CompareState(ctx, s, want); diff != "" {
			t.Fatalf("node %d sees a state other than the fold: %s", i+1, diff)
		}
	}
	retries := int64(0)
	for _, s := range stores {
		retries += s.Retries()
	}
	t.Logf("%d deliveries from 3 replicas on 3 nodes: %d statements run again", len(stream), retries)
}

// Migrate from replicas on all three nodes at once: GET_LOCK serialises
// only the replicas of one node, so the nodes race, and every migration
// must still apply once, with no error.
func TestGaleraConcurrentMigrate(t *testing.T) {
	nodes := galeraNodes(t)
	table := testdb.OwnSchema(t, nodes[0], sqlstore.MySQL) + ".users"
	errs := make([]error, 9)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			s, err := sqlstore.New(nodes[i%3], sqlstore.Config{Dialect: sqlstore.MySQL, Table: table})
			if err == nil {
				<-start
				err = s.Migrate(context.Background())
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Migrate %d (node %d): %v", i, i%3+1, err)
		}
	}
	files, _ := os.ReadDir(filepath.Join("schema", "mysql"))
	var n, top int
	if err := nodes[1].QueryRow("SELECT COUNT(*), MAX(version) FROM "+table+"_migrations").Scan(&n, &top); err != nil || n != len(files) || top != len(files) {
		t.Fatalf("migrations recorded: %d up to %d, %v; want %d", n, top, err, len(files))
	}
	s, _ := sqlstore.New(nodes[2], sqlstore.Config{Dialect: sqlstore.MySQL, Table: table})
	defer s.Close()
	w := usersync.Write{ID: "id-1", Issuer: "https://issuer.test", Subject: "u1", TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", "u1"),
		Version: 1, Fields: usersync.AllFields, Profile: usersync.Profile{Name: "Ada"}, At: time.Now()}
	if _, o, err := s.Upsert(context.Background(), w); err != nil || o != usersync.Created {
		t.Fatalf("after the concurrent migrations: %v, %v", o, err)
	}
}

// A write on one node is seen at once by a read on another: with
// wsrep_sync_wait=7, always.
func TestGaleraReadYourWrites(t *testing.T) {
	stores := galeraStores(t)
	var wait int
	if err := galeraNodes(t)[1].QueryRow("SELECT @@SESSION.wsrep_sync_wait").Scan(&wait); err != nil || wait != 7 {
		t.Fatalf("wsrep_sync_wait = %d, %v; want 7 from the DSN", wait, err)
	}
	ctx := context.Background()
	for i := range 200 {
		sub := fmt.Sprint("u", i)
		w := usersync.Write{ID: "id-" + sub, Issuer: "https://issuer.test", Subject: sub, TokenIdentifier: usersync.TokenIdentifier("https://issuer.test", sub),
			Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: sub}, At: time.Now()}
		if _, _, err := stores[i%3].Upsert(ctx, w); err != nil {
			t.Fatal(err)
		}
		u, err := stores[(i+1)%3].GetByTokenIdentifier(ctx, w.TokenIdentifier)
		if err != nil || u.Name != sub {
			t.Fatalf("write on node %d, read on node %d: %+v, %v", i%3+1, (i+1)%3+1, u, err)
		}
	}
}

// BenchmarkUpsertGalera compares one upsert on a single MariaDB with one on
// a node of the Galera cluster (the same MariaDB build): the difference is
// the cluster's certification round trip at commit.
func BenchmarkUpsertGalera(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, s *sqlstore.Store) {
		b.ReportAllocs()
		const users = 1000
		ti := func(i int) (string, string) {
			sub := fmt.Sprintf("user_%04d", i%users)
			return sub, usersync.TokenIdentifier("https://bench.test", sub)
		}
		for i := 0; b.Loop(); i++ {
			sub, key := ti(i)
			if _, _, err := s.Upsert(ctx, usersync.Write{ID: fmt.Sprint("id-", i), Issuer: "https://bench.test", Subject: sub, TokenIdentifier: key,
				Version: usersync.Version(i + 1), Fields: usersync.FieldName, Profile: usersync.Profile{Name: fmt.Sprint("n", i)}, At: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("mariadb", func(b *testing.B) {
		be := backends[2]
		be.SkipIfUnset(b)
		run(b, be.NewStore(b))
	})
	b.Run("galera", func(b *testing.B) {
		run(b, galeraStores(b)[0])
	})
}

// TestGaleraLinkOnEveryNode writes each person on every node at once,
// with the Link hook of an app's own table. Each person ends with one
// stored user, every write that reported Created reported the ID the
// cluster kept, that ID has exactly one row of the app's, and the legacy
// row they all claim by email is linked once.
//
// A known defect remains (docs/operations.md, Galera): a brute-force
// abort under the hook's statements lets those after it commit on their
// own, so the app can keep a row linked to an ID no user has (an orphan,
// in about one run in six). The Store runs the aborted transaction again
// (commit), so the caller never gets that ID; the test counts and logs
// the orphans.
func TestGaleraLinkOnEveryNode(t *testing.T) {
	ctx := context.Background()
	nodes := galeraNodes(t)
	mysqlBackend := backends[2]
	table := testdb.OwnSchema(t, nodes[0], sqlstore.MySQL) + ".users"
	app := newLegacyApp(t, mysqlBackend, nodes[0], table)
	app.insert(t, 1, "shared@example.com")
	var stores []*sqlstore.Store
	for i, db := range nodes {
		s, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.MySQL, Table: table, OnWrite: app.hook})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	const people = 12
	var mu sync.Mutex
	created := map[string][]string{} // person -> the IDs of the writes that reported Created
	var wg sync.WaitGroup
	for p := range people {
		for r, s := range stores {
			wg.Go(func() {
				w := linkWrite(fmt.Sprintf("p%d", p), "", "shared@example.com", true, p)
				w.ID = fmt.Sprintf("u-p%d-r%d", p, r)
				u, o, err := s.Upsert(ctx, w)
				if err != nil {
					t.Error(err)
					return
				}
				if o == usersync.Created {
					mu.Lock()
					created[w.Subject] = append(created[w.Subject], u.ID)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var retries int64
	for _, s := range stores {
		retries += s.Retries()
	}
	rows := app.rows(t) // "email linked-ID" by the app's key
	linked := map[string][]string{}
	for key, row := range rows {
		_, uid, _ := strings.Cut(row, " ")
		linked[uid] = append(linked[uid], key)
	}
	_, legacy, _ := strings.Cut(rows["1"], " ")
	if legacy == "" {
		t.Fatalf("the legacy row was linked to no one: %v", rows)
	}
	kept := map[string]bool{}
	for p := range people {
		sub := fmt.Sprintf("p%d", p)
		u, err := stores[p%len(stores)].GetByTokenIdentifier(ctx, linkWrite(sub, "", "", false, 0).TokenIdentifier)
		if err != nil {
			t.Fatal(err)
		}
		kept[u.ID] = true
		if len(linked[u.ID]) != 1 {
			t.Fatalf("%s's ID %s has %d rows of the app's: %v", sub, u.ID, len(linked[u.ID]), rows)
		}
		if len(created[sub]) != 1 || created[sub][0] != u.ID {
			t.Fatalf("%s: writes reported Created with IDs %v; the cluster kept %s", sub, created[sub], u.ID)
		}
	}
	orphans := 0
	for id, keys := range linked {
		if !kept[id] {
			orphans += len(keys) // the defect above
		}
	}
	if len(rows) != people+orphans {
		t.Fatalf("%d rows of the app's for %d people and %d orphans: %v", len(rows), people, orphans, rows)
	}
	t.Logf("%d people written on %d nodes at once: %d transactions run again, %d orphan rows of the app's (the known Galera defect), the legacy row's ID kept: %v",
		people, len(stores), retries, orphans, kept[legacy])
}
