package feed_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
	"github.com/usersync/usersync/usersynctest"
)

// The environment of a consumer's process that TestARestartedReplicaResumesAtOnce
// starts: the test binary, run again.
const (
	childDriver = "USERSYNC_FEED_CHILD_DRIVER" // set in a child: the database/sql driver
	childDSN    = "USERSYNC_FEED_CHILD_DSN"
	childHolder = "USERSYNC_FEED_CHILD_HOLDER"
	childTTL    = "USERSYNC_FEED_CHILD_TTL"
)

// TestARestartedReplicaResumesAtOnce kills (SIGKILL) a process that runs a
// consumer, then starts it again, as a supervisor restarts a crashed
// replica: with the same, stable Holder, the restarted process takes the
// consumer's lease back at once and delivers the change written while it
// was down long before the dead process's lease expires; with another
// holder (as with the default, unique to each process), it waits for the
// expiry, as a second live replica must.
func TestARestartedReplicaResumesAtOnce(t *testing.T) {
	if os.Getenv(childDriver) != "" {
		runChild(t)
		return
	}
	for _, b := range testdb.Backends {
		for _, tc := range []struct {
			name      string
			restartAs string        // the restarted process's holder; the first one's is replica-0
			ttl       time.Duration // both processes' LeaseTTL
			atOnce    bool          // it resumes before the dead process's lease expires; else only after
		}{
			// 30 s, the default: a restart that takes longer on a slow
			// machine than the 20 s left of the lease, at least, is not
			// at once.
			{name: "the same replica", restartAs: "replica-0", ttl: 30 * time.Second, atOnce: true},
			{name: "another holder", restartAs: "replica-1", ttl: 3 * time.Second, atOnce: false},
		} {
			t.Run(b.Name+"/"+tc.name, func(t *testing.T) {
				ctx := context.Background()
				dsn := b.DSN(t) // skips an SQL server whose DSN is unset
				if b.Env == "" {
					dsn = sqlstore.SQLiteDSN(dsn)
				}
				db, err := sql.Open(b.Driver, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				if b.Env == "" {
					db.SetMaxOpenConns(1)
				}
				s, err := sqlstore.New(db, sqlstore.Config{Dialect: b.Dialect})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				write(t, s, 5, 2)

				first := startChild(t, b.Driver, dsn, "replica-0", tc.ttl)
				usersynctest.WaitForConsumer(t, s, "effects") // it holds the lease, and renews it
				first.kill(t)
				killed := time.Now()
				// The dead process's lease: held until expires, unless taken over.
				var expires int64
				if err := db.QueryRowContext(ctx, "SELECT expires_at FROM users_leases WHERE name = 'usersync:feed:effects'").Scan(&expires); err != nil {
					t.Fatal(err)
				}
				// While the replica is down, a user is deleted.
				syncer, err := usersync.New(usersync.Config{Store: s, Logger: quiet})
				if err != nil {
					t.Fatal(err)
				}
				if _, o, err := syncer.Delete(ctx, issuer, "u1"); err != nil || o != usersync.Deleted {
					t.Fatalf("delete: %v, %v", o, err)
				}
				all, err := s.Changes(ctx, 0, 1000)
				if err != nil {
					t.Fatal(err)
				}
				deletion := all[len(all)-1].Seq

				restarted := time.Now()
				second := startChild(t, b.Driver, dsn, tc.restartAs, tc.ttl)
				delivered := second.waitDelivered(t, deletion)
				resumed := time.Now()
				usersynctest.WaitForConsumer(t, s, "effects")
				second.kill(t)

				left := time.UnixMilli(expires).Sub(delivered.at)
				t.Logf("restart to resume: %v (the process ran for %v before it delivered; killed %v before the restart); the dead process's lease had %v left",
					resumed.Sub(restarted).Round(time.Millisecond), delivered.at.Sub(second.ready(t)).Round(time.Millisecond),
					restarted.Sub(killed).Round(time.Millisecond), left.Round(time.Millisecond))
				switch {
				case tc.atOnce && left <= 0:
					t.Fatalf("the restarted replica delivered %v after the dead process's lease expired: it waited for it", -left)
				case !tc.atOnce && left > 0:
					t.Fatalf("another holder delivered %v before the dead process's lease expired: two holders at once", left)
				}
				// It took over the dead process's lease, and says so at Info.
				// (Another holder may find the lease expired already, on a
				// slow machine: TestTakeoversAreLogged logs that.)
				const want = "level=INFO msg=\"lease: took over a lease that another process held under this holder"
				if logs := second.logs(); tc.atOnce && !strings.Contains(logs, want) {
					t.Fatalf("the restarted process did not log the takeover:\n%s", logs)
				}
			})
		}
	}
}

// child is a consumer's process.
type child struct {
	cmd       *exec.Cmd
	mu        sync.Mutex
	stderr    bytes.Buffer
	started   time.Time          // when it ran its Runner
	delivered chan delivery      // what its handler delivered
	exited    chan struct{}      // closed when its output ended
	wait      func() error       // cmd.Wait, once
	done      context.CancelFunc // ends it when the test does
}

// delivery is a change a child's handler was handed, and when.
type delivery struct {
	seq int64
	at  time.Time
}

// startChild runs a consumer named effects, with holder and ttl, in a new
// process on the database of dsn.
func startChild(t *testing.T, driver, dsn, holder string, ttl time.Duration) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestARestartedReplicaResumesAtOnce$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), childDriver+"="+driver, childDSN+"="+dsn, childHolder+"="+holder, childTTL+"="+ttl.String())
	c := &child{cmd: cmd, delivered: make(chan delivery, 1000), exited: make(chan struct{}), done: cancel}
	cmd.Stderr = &lockedWriter{mu: &c.mu, w: &c.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var waitErr error
	c.wait = func() error { once.Do(func() { <-c.exited; waitErr = cmd.Wait() }); return waitErr }
	t.Cleanup(func() { cancel(); c.wait() })
	go func() {
		defer close(c.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 || f[0] != "feedchild:" {
				continue // the test framework's
			}
			ms, _ := strconv.ParseInt(f[3], 10, 64)
			switch f[1] {
			case "ready":
				c.mu.Lock()
				c.started = time.UnixMilli(ms)
				c.mu.Unlock()
			case "delivered":
				seq, _ := strconv.ParseInt(f[2], 10, 64)
				c.delivered <- delivery{seq: seq, at: time.UnixMilli(ms)}
			}
		}
	}()
	return c
}

// waitDelivered waits until the child's handler is handed the change seq.
func (c *child) waitDelivered(t *testing.T, seq int64) delivery {
	t.Helper()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case d := <-c.delivered:
			if d.seq == seq {
				return d
			}
		case <-c.exited:
			t.Fatalf("the consumer's process exited before it delivered change %d:\n%s", seq, c.logs())
		case <-timeout.C:
			t.Fatalf("the consumer's process did not deliver change %d in a minute:\n%s", seq, c.logs())
		}
	}
}

// kill kills the child, as SIGKILL does: it saves and releases nothing.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	c.wait()
}

// ready returns when the child ran its Runner.
func (c *child) ready(t *testing.T) time.Time {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started.IsZero() {
		t.Fatal("the consumer's process never said it was ready")
	}
	return c.started
}

// logs returns what the child logged.
func (c *child) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// lockedWriter writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// runChild is the consumer's process: it runs the consumer effects, whose
// handler prints each change it is handed, until it is killed.
func runChild(t *testing.T) {
	ttl, err := time.ParseDuration(os.Getenv(childTTL))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open(os.Getenv(childDriver), os.Getenv(childDSN))
	if err != nil {
		t.Fatal(err)
	}
	dialect := map[string]sqlstore.Dialect{"sqlite": sqlstore.SQLite, "pgx": sqlstore.Postgres, "mysql": sqlstore.MySQL}[os.Getenv(childDriver)]
	if dialect == sqlstore.SQLite {
		db.SetMaxOpenConns(1)
	}
	s, err := sqlstore.New(db, sqlstore.Config{Dialect: dialect})
	if err != nil {
		t.Fatal(err)
	}
	r, err := feed.New(feed.Config{Store: s, Holder: os.Getenv(childHolder), LeaseTTL: ttl, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	r.Handle("effects", func(_ context.Context, c usersync.Change) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("feedchild: delivered %d %d\n", c.Seq, time.Now().UnixMilli())
		return nil
	})
	fmt.Printf("feedchild: ready - %d\n", time.Now().UnixMilli())
	r.Run(context.Background()) // until killed
}
