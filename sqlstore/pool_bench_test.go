package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/sqlstore"
)

// BenchmarkWebhookPostgresPool runs 16 goroutines against sqlstore on
// PostgreSQL: half deliver signed user.updated webhooks through the
// handler, half read users (as GET /api/users/me does), with
// database/sql's default pool (2 idle connections: under load, connections
// are closed and opened again all the time) and with the recommended one
// (as many idle as open, so they are kept).
func BenchmarkWebhookPostgresPool(b *testing.B) {
	dsn := os.Getenv("USERSYNC_POSTGRES_DSN")
	if dsn == "" {
		b.Skip("USERSYNC_POSTGRES_DSN is not set")
	}
	for _, pool := range []struct {
		name string
		set  func(*sql.DB)
	}{
		{"default", func(*sql.DB) {}},
		{"recommended", func(db *sql.DB) {
			db.SetMaxOpenConns(32)
			db.SetMaxIdleConns(32)
			db.SetConnMaxLifetime(30 * time.Minute)
			db.SetConnMaxIdleTime(5 * time.Minute)
		}},
	} {
		b.Run("pool="+pool.name, func(b *testing.B) {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() }) // after the drop of the schema: cleanups run last first
			pool.set(db)
			table := testdb.OwnSchema(b, db, sqlstore.Postgres) + ".users"
			store, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.Postgres, Table: table})
			if err != nil {
				b.Fatal(err)
			}
			if err := store.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			sender := clerktest.NewWebhookSender(b)
			quiet := slog.New(slog.DiscardHandler)
			p, err := clerk.New(clerk.Config{Issuer: "https://bench.clerk.test", WebhookSecrets: []string{sender.Secret}})
			if err != nil {
				b.Fatal(err)
			}
			syncer, err := usersync.New(usersync.Config{Store: store, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			h, err := usersync.NewWebhookHandler(syncer, p, usersync.WebhookConfig{Logger: quiet, DedupeSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			// Signed deliveries, prepared before the clock starts: 1,000
			// users, each updated with a newer version every time.
			const users, rounds = 1000, 20
			bodies := make([][]byte, users*rounds)
			headers := make([]http.Header, len(bodies))
			base := time.Now().Add(-time.Hour)
			for i := range bodies {
				bodies[i] = clerktest.UserEvent("user.updated", clerktest.User{ID: fmt.Sprintf("user_%04d", i%users),
					FirstName: clerktest.Str(fmt.Sprint("Name ", i)), Email: "u@example.com", UpdatedAt: base.Add(time.Duration(i) * time.Millisecond)})
				headers[i] = sender.Headers(fmt.Sprintf("msg_%d", i), bodies[i])
			}
			// The app, served over loopback HTTP: the webhook, and a read
			// of one user as GET /api/users/me does.
			mux := http.NewServeMux()
			mux.Handle("POST /clerk-users-webhook", h)
			mux.HandleFunc("GET /users/{sub}", func(w http.ResponseWriter, r *http.Request) {
				ti := usersync.TokenIdentifier("https://bench.clerk.test", r.PathValue("sub"))
				if _, err := store.GetByTokenIdentifier(r.Context(), ti); err != nil {
					http.Error(w, "not found", http.StatusNotFound)
				}
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			var next, failed, reads, deliveries atomic.Int64
			var mu sync.Mutex
			var latencies []time.Duration
			b.SetParallelism(8) // 16 clients on 2 cores: 8 senders, 8 readers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				defer func() {
					mu.Lock()
					latencies = append(latencies, mine...)
					mu.Unlock()
				}()
				for pb.Next() {
					n := int(next.Add(1) - 1)
					i := n / 2 % len(bodies)
					var req *http.Request
					if n%2 == 1 { // a reader, of a user the first round may not have stored yet
						req, _ = http.NewRequest("GET", fmt.Sprintf("%s/users/user_%04d", srv.URL, i%users), nil)
						reads.Add(1)
					} else {
						req, _ = http.NewRequest("POST", srv.URL+"/clerk-users-webhook", bytes.NewReader(bodies[i]))
						req.Header = headers[i].Clone()
						deliveries.Add(1)
					}
					start := time.Now()
					resp, err := client.Do(req)
					mine = append(mine, time.Since(start))
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 && (req.Method == "POST" || n/2 > 2*users) {
						failed.Add(1)
					}
				}
			})
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d requests failed", n)
			}
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)*99/100])/1e6, "p99-ms")
			st := db.Stats()
			b.ReportMetric(float64(st.MaxIdleClosed+st.MaxLifetimeClosed+st.MaxIdleTimeClosed)/float64(b.N), "closed-conns/op")
			b.ReportMetric(float64(deliveries.Load())/b.Elapsed().Seconds(), "deliveries/s")
			b.ReportMetric(float64(reads.Load())/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
