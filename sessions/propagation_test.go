package sessions_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/sqlstore"
)

// The environment of a child process of TestAnotherProcessLearns and
// BenchmarkPropagation: the database it opens.
const (
	childDriver = "USERSYNC_SESSIONS_CHILD_DRIVER"
	childDSN    = "USERSYNC_SESSIONS_CHILD_DSN"
)

// TestAnotherProcessLearns holds that a replica in another process, on
// every database, learns of each ending another one records: its Set
// refuses the session's tokens. How fast is BenchmarkPropagation's.
func TestAnotherProcessLearns(t *testing.T) {
	if os.Getenv(childDSN) != "" {
		runChild(t)
		return
	}
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			p := startPropagation(t, b)
			for i := range 5 {
				p.end(t, i)
			}
		})
	}
}

// BenchmarkPropagation measures how long an ending recorded by one
// process takes to be refused by another's Set (Poll 100 ms, the
// default): from before Set.End is called to the first check that
// refuses it, on each database. The endings are spread at random over
// the poll's phase; it reports the median and the 99th percentile.
//
//	go test -run '^$' -bench Propagation -benchtime 200x ./sessions
func BenchmarkPropagation(b *testing.B) {
	for _, backend := range testdb.Backends {
		b.Run(backend.Name, func(b *testing.B) {
			p := startPropagation(b, backend)
			rng := rand.New(rand.NewPCG(1, 2))
			var took []time.Duration
			i := 0
			for b.Loop() {
				time.Sleep(time.Duration(rng.Int64N(int64(100 * time.Millisecond)))) // the poll's phase
				took = append(took, p.end(b, i))
				i++
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/1e6, "median-ms")
			b.ReportMetric(float64(took[len(took)*99/100])/1e6, "p99-ms")
		})
	}
}

// propagation is a child process that runs a Set on a database, and this
// process's Set that records endings there.
type propagation struct {
	set     *sessions.Set
	learned chan learned
	exited  chan struct{}
	stderr  *strings.Builder
}

// learned is when the child's Set first refused an ending.
type learned struct {
	i  int
	at time.Time
}

func startPropagation(tb testing.TB, b *testdb.Backend) *propagation {
	tb.Helper()
	dsn := b.DSN(tb) // skips if the backend is not set
	if b.Dialect == sqlstore.SQLite {
		dsn = sqlstore.SQLiteDSN(dsn)
	}
	store := openStore(tb, b.Driver, dsn)
	set, err := sessions.New(context.Background(), sessions.Config{Store: store, MaxStale: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { set.Close() })

	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestAnotherProcessLearns$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), childDriver+"="+b.Driver, childDSN+"="+dsn)
	p := &propagation{set: set, learned: make(chan learned, 100), exited: make(chan struct{}), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "sessionschild:" && f[1] == "ready":
				close(ready)
			case len(f) == 4 && f[0] == "sessionschild:" && f[1] == "learned":
				i, _ := strconv.Atoi(f[2])
				ns, _ := strconv.ParseInt(f[3], 10, 64)
				p.learned <- learned{i, time.Unix(0, ns)}
			}
		}
	}()
	tb.Cleanup(func() { cancel(); <-p.exited; cmd.Wait() })
	select {
	case <-ready:
	case <-p.exited:
		tb.Fatalf("the child process exited before it was ready:\n%s", p.stderr)
	case <-time.After(time.Minute):
		tb.Fatalf("the child process was not ready in a minute:\n%s", p.stderr)
	}
	return p
}

// end records the ending of session i and returns how long the child took
// to refuse it.
func (p *propagation) end(tb testing.TB, i int) time.Duration {
	tb.Helper()
	start := time.Now()
	if err := p.set.End(context.Background(), sessions.Ending{Issuer: issuer, SessionID: fmt.Sprintf("sess_prop_%d", i)}); err != nil {
		tb.Fatal(err)
	}
	select {
	case l := <-p.learned:
		if l.i != i {
			tb.Fatalf("the child learned of ending %d, want %d", l.i, i)
		}
		return l.at.Sub(start)
	case <-p.exited:
		tb.Fatalf("the child process exited:\n%s", p.stderr)
	case <-time.After(time.Minute):
		tb.Fatalf("the child process did not refuse ending %d in a minute", i)
	}
	return 0
}

// openStore opens and migrates a store on dsn.
func openStore(tb testing.TB, driver, dsn string) *sqlstore.Store {
	tb.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	dialect := map[string]sqlstore.Dialect{"sqlite": sqlstore.SQLite, "pgx": sqlstore.Postgres, "mysql": sqlstore.MySQL}[driver]
	if dialect == sqlstore.SQLite {
		db.SetMaxOpenConns(1)
	}
	s, err := sqlstore.New(db, sqlstore.Config{Dialect: dialect})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(); db.Close() })
	return s
}

// runChild is the child process: a Set with the default Poll on the
// database, whose refusals of the endings sess_prop_0, 1, ... it prints, in
// order, until it is killed.
func runChild(t *testing.T) {
	store := openStore(t, os.Getenv(childDriver), os.Getenv(childDSN))
	set, err := sessions.New(context.Background(), sessions.Config{Store: store, MaxStale: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("sessionschild: ready")
	for i := 0; ; i++ {
		id := identity("user_prop", fmt.Sprintf("sess_prop_%d", i))
		for set.CheckSession(id) == nil {
			time.Sleep(100 * time.Microsecond)
		}
		fmt.Printf("sessionschild: learned %d %d\n", i, time.Now().UnixNano())
	}
}
