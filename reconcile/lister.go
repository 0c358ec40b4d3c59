package reconcile

import (
	"context"
	"fmt"
	"iter"
)

// lister pages through one of the provider's lists (its users, its
// organizations, an organization's memberships), oldest first, and yields
// each item once.
//
// Offset paging over a list that changes is not a snapshot. Items created
// during the sweep come last (oldest first), and an item inserted before
// the offset (an import with a past created_at) shifts the list right: the
// next page repeats an item, which is dropped. An item deleted before the
// offset shifts it left: the next page would start one item late and the
// item it should have started with would never be listed. So every page
// after the first overlaps the previous one by an item, and when that item
// is not the first of the page, the list moved left under the sweep: the
// lister steps back a page and lists again from there.
type lister[T any] struct {
	page func(ctx context.Context, offset, limit int) ([]T, error)
	key  func(*T) string // an item's key in the list: a user's subject
	size int
	noun string // the list, in an error: "user"
	// listed holds the keys listed so far. The lister owns it until the
	// listing ends.
	listed map[string]struct{}
}

// newLister returns a lister of the pages of page, of size items, for a
// list of about total items.
func newLister[T any](page func(context.Context, int, int) ([]T, error), key func(*T) string, size, total int, noun string) *lister[T] {
	return &lister[T]{page: page, key: key, size: size, noun: noun, listed: make(map[string]struct{}, min(max(total, 0), 1<<20))}
}

// fetched is a page of new items, or the error of listing it.
type fetched[T any] struct {
	offset int
	page   []T
	err    error
}

// start lists the pages in a goroutine, one page ahead of the consumer
// (the provider's latency overlaps the store's). The sequence ends after
// the last page or an error; stop ends the listing and waits for it to
// end.
func (l *lister[T]) start(ctx context.Context) (iter.Seq[fetched[T]], func()) {
	return ahead(ctx, l.each)
}

// ahead runs produce in a goroutine, one item ahead of the consumer of the
// sequence it returns; stop ends it (its context) and waits for it to end.
// produce sends every item, its last one too: the sequence ends only when
// produce returns (or the consumer stops).
func ahead[U any](ctx context.Context, produce func(ctx context.Context, send func(U) bool)) (iter.Seq[U], func()) {
	ctx, cancel := context.WithCancel(ctx)
	items := make(chan U, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(items)
		produce(ctx, func(u U) bool {
			items <- u // stop drains the channel
			return true
		})
	}()
	seq := func(yield func(U) bool) {
		for u := range items {
			if !yield(u) {
				return
			}
		}
	}
	return seq, func() {
		cancel()
		for range items { // unblock a send, then wait for the goroutine
		}
		<-done
	}
}

// each lists the pages in this goroutine and yields each: new items (an
// empty page when all were listed before), or the error that ends the
// listing. It ends after the last page, after an error or when yield
// returns false.
func (l *lister[T]) each(ctx context.Context, yield func(fetched[T]) bool) {
	next := 0      // the offset of the first item not listed yet, as far as we know
	stepsBack := 0 // bounded: a list that keeps moving ends the sweep
	for {
		from := max(next-1, 0) // overlap the previous page by one item
		page, err := l.page(ctx, from, l.size)
		if err == nil {
			err = ctx.Err() // stopped: the sweep did not end here
		}
		if err != nil {
			yield(fetched[T]{offset: from, err: err})
			return
		}
		anchored := false // the page starts with an item listed before
		if len(page) > 0 {
			_, anchored = l.listed[l.key(&page[0])]
		}
		fresh := make([]T, 0, len(page))
		for i := range page {
			if k := l.key(&page[i]); !l.has(k) {
				l.listed[k] = struct{}{}
				fresh = append(fresh, page[i])
			}
		}
		if !yield(fetched[T]{offset: from, page: fresh}) {
			return
		}
		switch {
		case from > 0 && !anchored:
			// Items before from were deleted since the previous page: list
			// the page before from again, where the skipped items went.
			if stepsBack++; stepsBack > 100+len(l.listed)/l.size*2 {
				yield(fetched[T]{offset: from, err: fmt.Errorf("the %s list keeps moving under the sweep (%d steps back)", l.noun, stepsBack)})
				return
			}
			next = max(from-l.size+1, 0)
		case len(page) < l.size:
			return
		default:
			next = from + len(page)
		}
	}
}

// has reports whether the item of key was listed.
func (l *lister[T]) has(key string) bool {
	_, ok := l.listed[key]
	return ok
}
