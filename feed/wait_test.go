package feed_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/usersynctest"
)

// polled is a store that tells when WaitCaughtUp polls: when it reads the
// consumers' positions after reading the feed.
type polled struct {
	store
	mu      sync.Mutex
	read    bool          // the feed was read
	polling chan struct{} // closed at the first read of the positions after that
}

func (p *polled) Changes(ctx context.Context, after int64, limit int) ([]usersync.Change, error) {
	p.mu.Lock()
	p.read = true
	p.mu.Unlock()
	return p.store.Changes(ctx, after, limit)
}

func (p *polled) LeaseCursors(ctx context.Context, prefix string) (map[string]int64, error) {
	p.mu.Lock()
	if p.read {
		select {
		case <-p.polling:
		default:
			close(p.polling)
		}
	}
	p.mu.Unlock()
	return p.store.LeaseCursors(ctx, prefix)
}

func TestWaitCaughtUp(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			if err := feed.WaitCaughtUp(ctx, s, "a b"); !errors.Is(err, usersync.ErrInvalid) {
				t.Fatalf("a bad name: %v", err)
			}
			// An empty feed: nothing to wait for, though no one consumes it.
			if err := feed.WaitCaughtUp(ctx, s, "effects"); err != nil {
				t.Fatalf("an empty feed: %v", err)
			}
			n := write(t, s, 5, 2)
			// A consumer that no one runs never catches up.
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			if err := feed.WaitCaughtUp(short, s, "effects"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a consumer no one runs: %v, want the context's error", err)
			}

			// The consumer's handler waits at first, and for every change
			// written after WaitCaughtUp was called.
			all, _ := s.Changes(ctx, 0, 1000)
			last := all[len(all)-1].Seq
			first, later := make(chan struct{}), make(chan struct{})
			entered := make(chan struct{}, 1)
			l := newLedger()
			r := newRunner(t, feed.Config{Store: s})
			r.Handle("effects", func(ctx context.Context, c usersync.Change) error {
				gate := first
				if c.Seq > last {
					gate = later
				}
				select {
				case entered <- struct{}{}:
				default:
				}
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
				return l.handle(ctx, c)
			})
			stop := start(r)
			defer stop()
			<-entered // it read the changes so far: the later ones make a batch of their own

			p := &polled{store: s, polling: make(chan struct{})}
			done := make(chan error, 1)
			go func() {
				wctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				done <- feed.WaitCaughtUp(wctx, p, "effects")
			}()
			<-p.polling // it knows the newest change: last
			more := writeAs(t, s, "later", 2, 1)
			select {
			case err := <-done:
				t.Fatalf("WaitCaughtUp returned %v before the consumer handled a change", err)
			default:
			}
			close(first)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			l.mu.Lock()
			got := len(l.deliveries)
			l.mu.Unlock()
			if got != n {
				t.Fatalf("WaitCaughtUp returned after %d of the %d changes before it", got, n)
			}

			close(later)
			usersynctest.WaitForConsumer(t, s, "effects")
			l.mu.Lock()
			got = len(l.deliveries)
			l.mu.Unlock()
			if got != n+more {
				t.Fatalf("WaitForConsumer returned after %d of %d changes", got, n+more)
			}
		})
	}
}
