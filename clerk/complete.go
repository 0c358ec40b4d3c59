package clerk

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/clock"
)

// completer completes, from the Backend API (GET /users/{id}), the users
// that a session token has just created: Clerk's default session token
// carries no name, no email, no external ID and no metadata, and the
// webhook that does may come later, or never. It is the Syncer's
// usersync.Config.CompleteUser in an App with a secret key.
//
// A request waits at most wait for its user; the lookup goes on in the
// background, under the context of App.Run. Lookups run one at a time, at
// most one every every, so that a 429 (which pauses the whole UserList)
// leaves no queue of requests to fire at once when it is over. A user is
// looked up once: the requests that find a lookup of theirs queued or under
// way wait for that one.
type completer struct {
	users  *UserList
	issuer string
	wait   time.Duration // how long a request waits for its user
	every  time.Duration // the least time between the starts of two lookups
	log    *slog.Logger
	syncer *usersync.Syncer // writes the completions; set once the Syncer exists
	sleep  func(context.Context, time.Duration) error
	ended  func() // tests: called after each lookup's completion has ended

	mu      sync.Mutex
	state   completerState
	pending map[string]*completion // by subject: queued, or being looked up
	queue   []*completion          // the queued ones, oldest first
	wake    chan struct{}          // a completion was queued
	up      chan struct{}          // closed when App.Run starts the completions
}

type completerState int

const (
	waiting completerState = iota // for App.Run: completions queue
	running                       // App.Run runs: completions are made
	stopped                       // after App.Run or Close: none is made
)

// completion is the completion of one user: queued, under way, or over.
type completion struct {
	subject string // the Clerk user ID
	userID  string // the stored user's ID, for the logs
	done    chan struct{}
	// Set before done is closed: the user as the completion stored them,
	// if ok.
	user usersync.User
	ok   bool
}

const (
	// completionEvery spaces the lookups: 5 a second, half of what
	// Clerk allows a development instance (100 requests per 10 s; a
	// production one, 1,000), the rest left to the app and its
	// reconciles.
	completionEvery = 200 * time.Millisecond
	// maxQueued bounds the completions waiting for their turn, about 3
	// minutes of lookups: users past it are left to the webhook.
	maxQueued = 1000
)

func newCompleter(users *UserList, wait time.Duration, log *slog.Logger) *completer {
	return &completer{
		users: users, issuer: users.Issuer(), wait: wait, every: completionEvery, log: log, sleep: clock.Sleep,
		pending: map[string]*completion{}, wake: make(chan struct{}, 1), up: make(chan struct{}),
	}
}

// complete is usersync.Config.CompleteUser: it queues the completion of u
// (or joins the one queued) and waits for it at most c.wait, or until ctx
// ends, while App.Run runs; before Run has started, it queues it and
// returns at once (an app that never calls Run must not wait for nothing).
// It returns the completed user, or u.
func (c *completer) complete(ctx context.Context, u usersync.User) usersync.User {
	if u.Issuer != c.issuer {
		return u
	}
	c.mu.Lock()
	f := c.pending[u.Subject]
	switch {
	case c.state == stopped:
		c.mu.Unlock()
		return u
	case f == nil && len(c.queue) >= maxQueued:
		run := c.state == running
		c.mu.Unlock()
		if run { // else Run has not started, or is never called: nothing to report
			c.log.WarnContext(ctx, "clerk: too many users are waiting to be completed from the Backend API: this one is left to the webhook", "user_id", u.ID)
		}
		return u
	case f == nil:
		f = &completion{subject: u.Subject, userID: u.ID, done: make(chan struct{})}
		c.pending[u.Subject] = f
		c.queue = append(c.queue, f)
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	run := c.state == running
	c.mu.Unlock()
	if !run {
		return u
	}
	t := time.NewTimer(c.wait)
	defer t.Stop()
	select {
	case <-f.done:
		if f.ok {
			return f.user
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return u
}

// run makes the queued completions, one at a time, until ctx ends; then
// it stops the completer for good. It returns at once if the completer has
// stopped already (App.Close).
func (c *completer) run(ctx context.Context) {
	c.mu.Lock()
	if c.state != waiting {
		c.mu.Unlock()
		return
	}
	c.state = running
	c.mu.Unlock()
	close(c.up)
	defer c.stop()
	var last time.Time
	for {
		f := c.next(ctx)
		if f == nil {
			return
		}
		if d := c.every - time.Since(last); !last.IsZero() && d > 0 {
			if c.sleep(ctx, d) != nil {
				return
			}
		}
		last = time.Now()
		c.fill(ctx, f)
	}
}

// next returns the oldest queued completion, waiting for one; nil when ctx
// ends or the completer stops.
func (c *completer) next(ctx context.Context) *completion {
	for {
		c.mu.Lock()
		if c.state == stopped || ctx.Err() != nil {
			c.mu.Unlock()
			return nil
		}
		if len(c.queue) > 0 {
			f := c.queue[0]
			c.queue[0] = nil
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return f
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		}
	}
}

// fill looks the user of f up and writes them, at the API's version (their
// updated_at): a field the webhook or a newer token wrote since is kept, a
// user the API no longer has is left as stored, and a deleted one stays
// deleted.
func (c *completer) fill(ctx context.Context, f *completion) {
	var (
		u  usersync.User
		ok bool
	)
	defer func() {
		c.finish(f, u, ok)
		if c.ended != nil {
			c.ended()
		}
	}()
	w, err := c.users.Lookup(ctx, f.subject)
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, ErrWrongInstance):
		c.log.ErrorContext(ctx, "clerk: the secret key belongs to another instance than the issuer: no user is completed from the Backend API", "err", err)
		c.stop()
		return
	case err != nil:
		c.log.WarnContext(ctx, "clerk: completing a user from the Backend API failed: the webhook or a reconcile fills them in", "user_id", f.userID, "err", err)
		return
	case w == nil:
		if c.log.Enabled(ctx, slog.LevelDebug) {
			c.log.DebugContext(ctx, "clerk: a user to complete is not in the Backend API (deleted since?): left as stored", "user_id", f.userID)
		}
		return
	}
	u, _, err = c.syncer.Upsert(ctx, *w)
	switch {
	case errors.Is(err, usersync.ErrDeleted):
		if c.log.Enabled(ctx, slog.LevelDebug) {
			c.log.DebugContext(ctx, "clerk: a user to complete was deleted meanwhile: left deleted", "user_id", f.userID)
		}
	case err != nil && ctx.Err() == nil:
		c.log.WarnContext(ctx, "clerk: storing a user completed from the Backend API failed: the webhook or a reconcile fills them in", "user_id", f.userID, "err", err)
	case err == nil:
		ok = true
	}
}

// finish ends f, unless stop has ended it already.
func (c *completer) finish(f *completion, u usersync.User, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[f.subject] != f {
		return
	}
	delete(c.pending, f.subject)
	f.user, f.ok = u, ok
	close(f.done)
}

// stop stops the completer for good: the requests waiting go on with their
// users as stored, and no completion is queued any more.
func (c *completer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = stopped
	for subject, f := range c.pending {
		delete(c.pending, subject)
		close(f.done)
	}
	c.queue = nil
}
