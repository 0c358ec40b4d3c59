package clerk

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The bucket gives a second's worth of calls at once, then one every
// 1/rate, in turn; a call whose turn comes too late takes nothing.
func TestBucket(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	b := newBucket(4, func() time.Time { return now }) // 4 at once, then one every 250 ms
	const forever = time.Hour
	for i := range 4 {
		if wait, ok := b.reserve(forever); wait != 0 || !ok {
			t.Fatalf("call %d of the burst: %v, %v", i+1, wait, ok)
		}
	}
	for i, want := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond} {
		if wait, ok := b.reserve(forever); wait != want || !ok {
			t.Fatalf("waiting call %d: %v, %v; want %v", i+1, wait, ok, want)
		}
	}
	// The next turn is in 750 ms: a call that may wait 700 ms takes
	// nothing, so the one after it still gets that turn.
	if wait, ok := b.reserve(700 * time.Millisecond); wait != 750*time.Millisecond || ok {
		t.Fatalf("a call that cannot wait: %v, %v", wait, ok)
	}
	if wait, ok := b.reserve(forever); wait != 750*time.Millisecond || !ok {
		t.Fatalf("the next: %v, %v", wait, ok)
	}
	// A call that was not made gives its token back.
	b.unreserve()
	if wait, ok := b.reserve(forever); wait != 750*time.Millisecond || !ok {
		t.Fatalf("after a call given back: %v, %v", wait, ok)
	}
	// Time refills it, up to the burst and no further.
	now = now.Add(time.Hour)
	for i := range 4 {
		if wait, ok := b.reserve(forever); wait != 0 || !ok {
			t.Fatalf("call %d after an hour: %v, %v", i+1, wait, ok)
		}
	}
	if wait, _ := b.reserve(forever); wait != 250*time.Millisecond {
		t.Fatalf("the fifth after an hour: %v", wait)
	}
	// A clock that goes back takes nothing.
	now = now.Add(-time.Minute)
	if wait, _ := b.reserve(forever); wait != 500*time.Millisecond {
		t.Fatalf("after the clock went back: %v", wait)
	}
}

// Below one call a second, the bucket holds one.
func TestBucketSlow(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	b := newBucket(0.5, func() time.Time { return now })
	if wait, ok := b.reserve(time.Hour); wait != 0 || !ok {
		t.Fatalf("the first: %v, %v", wait, ok)
	}
	if wait, ok := b.reserve(time.Hour); wait != 2*time.Second || !ok {
		t.Fatalf("the second: %v, %v", wait, ok)
	}
}

// take fails at once, with how long the wait would be, when the turn
// comes after the context's deadline; else it waits for it.
func TestBucketTake(t *testing.T) {
	b := newBucket(0.001, time.Now) // one, then one every 1,000 s
	if err := b.take(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Had it waited, it would fail with the context's error, in a minute.
	err := b.take(ctx)
	var limited *rateLimitedError
	if !errors.As(err, &limited) || !errors.Is(err, context.DeadlineExceeded) || limited.wait < time.Minute || limited.wait > 1000*time.Second {
		t.Fatalf("take past the deadline: %v", err)
	}

	// With time enough it waits for its turn: the 11th call of 10 a
	// second starts 100 ms after the first, at the soonest.
	b = newBucket(10, time.Now)
	start := time.Now()
	for range 11 {
		if err := b.take(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 90*time.Millisecond {
		t.Fatalf("11 calls in %v", took)
	}
}
