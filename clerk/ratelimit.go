package clerk

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/usersync/usersync/internal/clock"
)

// bucket is a token bucket: it holds up to burst tokens, gains rate of
// them a second, and each call takes one, waiting for it if there is
// none. The calls that wait take theirs ahead (tokens goes below 0), so
// that they start in turn, rate a second. It is safe for concurrent use.
type bucket struct {
	rate  float64 // tokens a second, above 0
	burst float64 // the most it holds, 1 or more
	now   func() time.Time

	mu     sync.Mutex
	tokens float64   // below 0: taken ahead by the calls that wait
	last   time.Time // when tokens was last brought up to date
}

// newBucket returns a full bucket of rate tokens a second (above 0) that
// holds a second's worth, at least 1.
func newBucket(rate float64, now func() time.Time) *bucket {
	burst := max(1, math.Floor(rate))
	return &bucket{rate: rate, burst: burst, now: now, tokens: burst, last: now()}
}

// reserve takes a token, now or ahead, and returns how long its call
// waits for it. If that is longer than within, it takes none and returns
// the wait with false.
func (b *bucket) reserve(within time.Duration) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(b.burst, b.tokens+elapsed.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / b.rate * float64(time.Second)))
	if wait >= within {
		return wait, false
	}
	b.tokens--
	return wait, true
}

// unreserve gives back a token that reserve took for a call that was not
// made.
func (b *bucket) unreserve() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.burst, b.tokens+1)
}

// take waits for a token, until ctx's deadline at most: a wait that would
// outlast it is not begun, and take fails at once with an error that
// says how long it would have been (a *rateLimitedError).
func (b *bucket) take(ctx context.Context) error {
	within := time.Duration(math.MaxInt64)
	if deadline, ok := ctx.Deadline(); ok {
		within = time.Until(deadline)
	}
	wait, ok := b.reserve(within)
	if !ok {
		return &rateLimitedError{wait: wait}
	}
	if wait <= 0 {
		return nil
	}
	if err := clock.Sleep(ctx, wait); err != nil {
		b.unreserve()
		return err
	}
	return nil
}

// rateLimitedError reports a call that SessionStatusConfig.MaxCallsPerSecond
// holds back past the context's deadline: it wraps
// context.DeadlineExceeded.
type rateLimitedError struct {
	wait time.Duration // until the call could have started
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("over clerk.SessionStatusConfig.MaxCallsPerSecond: the next call could start in %v, after MaxWait", e.wait.Round(time.Millisecond))
}
func (e *rateLimitedError) Unwrap() error { return context.DeadlineExceeded }

// limitKey is the context key of the bucket that the Backend API
// requests made under the context take a token of (withLimit).
type limitKey struct{}

// withLimit returns ctx with b as the bucket of the Backend API requests
// made under it: each of them, retries included, takes one of its tokens
// first (backend.get).
func withLimit(ctx context.Context, b *bucket) context.Context {
	if b == nil {
		return ctx
	}
	return context.WithValue(ctx, limitKey{}, b)
}

// limit takes a token of ctx's bucket, if it has one (withLimit).
func limit(ctx context.Context) error {
	if b, ok := ctx.Value(limitKey{}).(*bucket); ok {
		return b.take(ctx)
	}
	return nil
}
