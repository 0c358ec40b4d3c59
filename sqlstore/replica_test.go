package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
	"github.com/usersync/usersync/usersynctest"
)

// Two app replicas (two Syncers on two pools over one database) share a
// shuffled, duplicated event stream; the database must end in the in-order
// fold, exactly as one process would.
func TestTwoReplicasConverge(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.SkipIfUnset(t)
			db, table := b.Open(t)
			replicas := []*sqlstore.Store{b.StoreOn(t, db, table), b.StoreOn(t, b.OpenExtra(t, db), table)}
			var syncers []*usersync.Syncer
			for _, r := range replicas {
				s, err := usersync.New(usersync.Config{Store: r})
				if err != nil {
					t.Fatal(err)
				}
				syncers = append(syncers, s)
			}

			events := usersynctest.Stream(rand.New(rand.NewPCG(7, 8)), 60, 600)
			r := rand.New(rand.NewPCG(9, 10))
			stream := append([]usersynctest.Event(nil), events...)
			for range len(events) / 4 {
				stream = append(stream, events[r.IntN(len(events))])
			}
			r.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })

			ctx := context.Background()
			var wg sync.WaitGroup
			for w := range 6 {
				s := syncers[w%2]
				wg.Go(func() {
					for i := w; i < len(stream); i += 6 {
						e := stream[i]
						var err error
						if e.Delete {
							_, _, err = s.Delete(ctx, usersynctest.StreamIssuer, e.Subject)
						} else {
							_, _, err = s.Upsert(ctx, usersync.Write{Issuer: usersynctest.StreamIssuer, Subject: e.Subject, Version: e.Version, Fields: e.Fields, Profile: e.Profile})
						}
						if err != nil && !errors.Is(err, usersync.ErrDeleted) {
							t.Errorf("replica %d: %v", w%2, err)
						}
					}
				})
			}
			wg.Wait()
			want := usersynctest.Fold(events)
			for i, s := range replicas {
				if diff := usersynctest.CompareState(ctx, s, want); diff != "" {
					t.Fatalf("replica %d sees a state other than the fold: %s", i, diff)
				}
			}
		})
	}
}

// The server kills every connection of the store mid-stream, twice
// between writes (idle connections) and six times inside a write's
// transaction (its hook kills the pool's backends, its own included):
// each write the kill interrupted fails with an error, nothing is
// half-written, and the store recovers without a restart.
func TestPostgresConnectionKilledMidStream(t *testing.T) {
	dsn := os.Getenv("USERSYNC_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("USERSYNC_POSTGRES_DSN is not set: skipping the PostgreSQL fault test")
	}
	b := backends[1]
	_, table := b.Open(t)
	app := "usersync_fault_" + testdb.RandomHex(4)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("pgx", dsn+sep+"application_name="+app)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// kill terminates every backend of the store's pool and returns how
	// many it terminated.
	kill := func(ctx context.Context) (int, error) {
		var n int
		err := admin.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1) k WHERE ok`, app).Scan(&n)
		return n, err
	}
	var armed atomic.Bool // the next write's hook kills
	killedIn := 0         // writes whose own backend the hook killed
	hookRuns := 0
	hook := func(ctx context.Context, _ *sql.Tx, _ usersync.Change) error {
		hookRuns++
		if !armed.CompareAndSwap(true, false) {
			return nil
		}
		n, err := kill(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("the hook's kill terminated no backend")
		}
		killedIn++
		return nil // the store's next statement, or its COMMIT, meets a dead connection
	}
	// Two stores on the one pool: the one with the hook writes while a
	// kill is armed, the one without it (the path most apps run) the rest.
	hooked := b.StoreWith(t, db, sqlstore.Config{Table: table, OnWrite: hook})
	plain := b.StoreOn(t, db, table)

	ctx := context.Background()
	events := usersynctest.Stream(rand.New(rand.NewPCG(11, 12)), 40, 400)
	deliver := func(e usersynctest.Event) error {
		ti := usersync.TokenIdentifier(usersynctest.StreamIssuer, e.Subject)
		store := plain
		if armed.Load() {
			store = hooked
		}
		var err error
		if e.Delete {
			_, _, err = store.Delete(ctx, usersync.Write{ID: "id-" + testdb.RandomHex(8), TokenIdentifier: ti, Issuer: usersynctest.StreamIssuer, Subject: e.Subject, At: time.Now()})
		} else {
			_, _, err = store.Upsert(ctx, usersync.Write{ID: "id-" + testdb.RandomHex(8), TokenIdentifier: ti, Issuer: usersynctest.StreamIssuer, Subject: e.Subject, Version: e.Version, Fields: e.Fields, Profile: e.Profile, At: time.Now()})
		}
		if errors.Is(err, usersync.ErrDeleted) {
			return nil
		}
		return err
	}
	var retry []usersynctest.Event
	interrupted := 0 // writes killed inside their transaction that failed, or ran again
	for i, e := range events {
		switch {
		case i == 100 || i == 300:
			if n, err := kill(ctx); err != nil {
				t.Fatalf("terminate: %v", err)
			} else if n == 0 {
				t.Fatal("the kill between writes terminated no backend of the store's pool")
			}
		case i%50 == 25 && i < 325:
			armed.Store(true)
		}
		kills, runs := killedIn, hookRuns
		err := deliver(e)
		if killedIn > kills && (err != nil || hookRuns > runs+1) {
			interrupted++
		}
		if err != nil {
			retry = append(retry, e) // as Svix would, after a 5xx
		}
	}
	if armed.Load() {
		t.Fatal("a kill was armed but no write ran its hook")
	}
	// A write whose transaction was killed under it must fail, or run
	// again whole (its hook too): one that succeeded as it was committed
	// half of itself, or the kill hit nothing.
	if killedIn != 6 || interrupted != killedIn {
		t.Fatalf("%d kills inside a write's transaction, %d of those writes failed or ran again; want 6 and 6", killedIn, interrupted)
	}
	// Redeliver what failed, in reverse order for good measure.
	for i := len(retry) - 1; i >= 0; i-- {
		if err := deliver(retry[i]); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	t.Logf("%d writes failed, all redelivered; %d killed inside their transaction", len(retry), killedIn)
	if diff := usersynctest.CompareState(ctx, plain, usersynctest.Fold(events)); diff != "" {
		t.Fatalf("after the faults: %s", diff)
	}
}
