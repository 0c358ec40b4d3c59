package feed_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/memstore"
)

// BenchmarkFeed measures a consumer with a handler that does nothing, on
// SQLite, PostgreSQL and memstore:
//
//   - drain: the feed holds 10,000 changes (imported in batches); changes/s
//     is how fast one consumer delivers them;
//   - latency: the consumer is up to date, and a writer changes a user
//     every 2 ms, 1,000 times; p50 and p99 are the time from the write's
//     start to its delivery, with the default PollInterval (50 ms).
//
// Run with -benchtime 1x.
func BenchmarkFeed(b *testing.B) {
	backends := map[string]func(b *testing.B) store{
		"memstore": func(*testing.B) store { return memstore.New() },
		"sqlite":   func(b *testing.B) store { return testdb.Backends[0].NewStore(b) },
		"postgres": func(b *testing.B) store { return testdb.Backends[1].NewStore(b) },
	}
	for _, name := range []string{"memstore", "sqlite", "postgres"} {
		b.Run(name+"/drain", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer() // the import is not measured
				s := backends[name](b)
				const n = 10_000
				syncer, _ := usersync.New(usersync.Config{Store: s, Logger: quiet})
				for start := 0; start < n; start += 500 {
					ws := make([]usersync.Write, 0, 500)
					for i := start; i < start+500; i++ {
						ws = append(ws, usersync.Write{Issuer: issuer, Subject: fmt.Sprint("u", i), Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "U"}})
					}
					if _, err := syncer.UpsertBatch(context.Background(), ws); err != nil {
						b.Fatal(err)
					}
				}
				var got atomic.Int64
				done := make(chan struct{})
				r, _ := feed.New(feed.Config{Store: s, Logger: quiet})
				r.Handle("count", func(context.Context, usersync.Change) error {
					if got.Add(1) == n {
						close(done)
					}
					return nil
				})
				ctx, cancel := context.WithCancel(context.Background())
				b.StartTimer()
				ran := make(chan error, 1)
				go func() { ran <- r.Run(ctx) }()
				<-done
				cancel()
				b.StopTimer()
				<-ran // stopped before its store is closed and its files removed
				b.StartTimer()
			}
			b.ReportMetric(float64(10_000*b.N)/b.Elapsed().Seconds(), "changes/s")
		})
		b.Run(name+"/latency", func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				s := backends[name](b)
				syncer, _ := usersync.New(usersync.Config{Store: s, Logger: quiet})
				const n = 1000
				var mu sync.Mutex
				sent := map[string]time.Time{} // user ID -> when its write began
				all := make(chan struct{})
				r, _ := feed.New(feed.Config{Store: s, Logger: quiet})
				r.Handle("latency", func(_ context.Context, c usersync.Change) error {
					now := time.Now()
					mu.Lock()
					defer mu.Unlock()
					lat = append(lat, now.Sub(sent[c.UserID]))
					if len(lat)%n == 0 {
						close(all)
					}
					return nil
				})
				ctx, cancel := context.WithCancel(context.Background())
				ran := make(chan error, 1)
				go func() { ran <- r.Run(ctx) }()
				time.Sleep(100 * time.Millisecond) // up to date, polling
				for i := range n {
					id := fmt.Sprint("id-", i)
					mu.Lock()
					sent[id] = time.Now()
					mu.Unlock()
					if _, _, err := syncer.Upsert(context.Background(), usersync.Write{ID: id, Issuer: issuer, Subject: fmt.Sprint("u", i), Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "U"}}); err != nil {
						b.Fatal(err)
					}
					time.Sleep(2 * time.Millisecond)
				}
				<-all
				cancel()
				<-ran // stopped before its store is closed and its files removed
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
