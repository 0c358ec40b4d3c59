package reconcile

import (
	"context"
	"fmt"
	"iter"

	"github.com/usersync/usersync"
)

// lister pages through a Source in a goroutine, one page ahead of the
// writes (the provider's latency overlaps the store's), and sends each
// user once.
//
// Offset paging over a list that changes is not a snapshot. Users created
// during the sweep come last (oldest first), and a user inserted before the
// offset (an import with a past created_at) shifts the list right: the
// next page repeats a user, which is dropped. A user deleted before the
// offset shifts it left: the next page would start one user late and the
// user it should have started with would never be listed. So every page
// after the first overlaps the previous one by a user, and when that user
// is not the first of the page, the list moved left under the sweep: the
// lister steps back a page and lists again from there.
type lister struct {
	src  Source
	size int
	// listed holds the subjects listed so far. The goroutine owns it until
	// the channel of start is closed.
	listed map[string]struct{}
}

// fetched is a page of new users, or the error of listing it.
type fetched struct {
	offset int
	page   []usersync.Write
	err    error
}

// start lists the pages in a goroutine. The sequence ends after the last
// page or an error; stop ends the listing and waits for it to end.
func (l *lister) start(ctx context.Context) (iter.Seq[fetched], func()) {
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan fetched, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(pages)
		l.run(ctx, pages)
	}()
	seq := func(yield func(fetched) bool) {
		for p := range pages {
			if !yield(p) {
				return
			}
		}
	}
	return seq, func() {
		cancel()
		for range pages { // unblock a send, then wait for the goroutine
		}
		<-done
	}
}

func (l *lister) run(ctx context.Context, pages chan<- fetched) {
	next := 0      // the offset of the first user not listed yet, as far as we know
	stepsBack := 0 // bounded: a list that keeps moving ends the sweep
	for {
		from := max(next-1, 0) // overlap the previous page by one user
		page, err := l.src.Page(ctx, from, l.size)
		if err == nil {
			err = ctx.Err() // stopped: the sweep did not end here
		}
		if err != nil {
			pages <- fetched{offset: from, err: err}
			return
		}
		anchored := false // the page starts with a user listed before
		if len(page) > 0 {
			_, anchored = l.listed[page[0].Subject]
		}
		fresh := make([]usersync.Write, 0, len(page))
		for _, w := range page {
			if _, ok := l.listed[w.Subject]; !ok {
				l.listed[w.Subject] = struct{}{}
				fresh = append(fresh, w)
			}
		}
		pages <- fetched{offset: from, page: fresh}
		switch {
		case from > 0 && !anchored:
			// Users before from were deleted since the previous page: list
			// the page before from again, where the skipped users went.
			if stepsBack++; stepsBack > 100+len(l.listed)/l.size*2 {
				pages <- fetched{offset: from, err: fmt.Errorf("the user list keeps moving under the sweep (%d steps back)", stepsBack)}
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
