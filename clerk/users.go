package clerk

import (
	"cmp"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/clock"
	"github.com/usersync/usersync/internal/pubkey"
)

// DefaultAPIURL is the base URL of Clerk's Backend API.
const DefaultAPIURL = "https://api.clerk.com/v1"

// ErrAPI reports a Backend API request that failed for good: refused
// (a bad secret key: 401, 403), malformed, or still failing (429, 5xx, the
// network) after its retries.
var ErrAPI = errors.New("clerk: Backend API request failed")

// UserList is the instance's list of users in the Backend API
// (GET /users, /users/count, /users/{id}), as writes versioned by each
// user's updated_at: what a reconcile pages through. It retries what Clerk
// asks to retry: a 429 after its Retry-After (at most a minute), a 5xx or
// a network error with backoff, six attempts in all, and stops when the
// context ends. A 429 pauses the whole list, not only the request that got
// it: no request of the list starts before its Retry-After has passed or
// a request has succeeded. Make one with Provider.UserList.
//
// Before its first request, a UserList checks that the secret key is the
// issuer's instance's (ErrWrongInstance if not): one of the signing keys
// the Backend API serves for it must be one of the issuer's, its
// Config.PublicKeyPEM or those of its Config.JWKSURL.
type UserList struct {
	p   *Provider
	api *backend
}

// backend makes the Backend API requests of every list of a Provider: one
// client, one instance check and one pause after a 429, as Clerk's rate
// limit is the instance's.
type backend struct {
	issuer  string
	base    string
	key     string
	client  *http.Client
	maxBody int64
	sleep   func(context.Context, time.Duration) error
	pem     crypto.PublicKey // the issuer's PEM key, if it has one
	jwksURL string           // else its JWKS

	checking chan struct{} // a lock, held by the instance check: waiting for it honours the context
	checked  atomic.Bool   // the secret key is the issuer's instance's

	paused sync.Mutex
	until  time.Time // after a 429: when the requests may start again
}

// UserList returns the instance's user list. It needs Config.SecretKey.
// The lists of one Provider (its UserList and OrganizationList) share
// their requests' pause after a 429 and the instance check.
func (p *Provider) UserList() (*UserList, error) {
	api, err := p.backend()
	if err != nil {
		return nil, err
	}
	return &UserList{p: p, api: api}, nil
}

// newBackend makes the Provider's Backend API client: Provider.backend
// calls it once.
func (p *Provider) newBackend() (*backend, error) {
	if p.secretKey == "" {
		return nil, fmt.Errorf("%w: the Backend API needs clerk.Config.SecretKey (sk_...)", usersync.ErrInvalid)
	}
	base := strings.TrimRight(p.cfg.APIURL, "/")
	if base == "" {
		base = DefaultAPIURL
	}
	if err := pubkey.CheckURL(base); err != nil {
		return nil, fmt.Errorf("%w: clerk.Config.APIURL is %w", usersync.ErrInvalid, err)
	}
	l := &backend{issuer: p.cfg.Issuer, base: base, key: p.secretKey, maxBody: 64 << 20, sleep: clock.Sleep, checking: make(chan struct{}, 1)}
	if p.cfg.PublicKeyPEM != "" {
		key, err := pubkey.ParsePEM(p.cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: clerk.Config.PublicKeyPEM: %w", usersync.ErrInvalid, err)
		}
		l.pem = key
	} else {
		l.jwksURL = cmp.Or(p.cfg.JWKSURL, p.cfg.Issuer+"/.well-known/jwks.json")
		if err := pubkey.CheckURL(l.jwksURL); err != nil {
			return nil, fmt.Errorf("%w: the JWKS URL of clerk.Config.Issuer is %w", usersync.ErrInvalid, err)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if p.cfg.HTTPClient != nil {
		c := *p.cfg.HTTPClient // a copy: the caller's client stays as it is
		client = &c
	}
	// The secret key goes to APIURL only: never follow a redirect with it.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	l.client = client
	return l, nil
}

// Issuer returns the instance's issuer: the users of the list are its.
func (l *UserList) Issuer() string { return l.p.cfg.Issuer }

// Count returns how many users the instance has.
func (l *UserList) Count(ctx context.Context) (int, error) {
	if err := l.api.checkInstance(ctx); err != nil {
		return 0, err
	}
	var c struct {
		Object     string `json:"object"`
		TotalCount *int   `json:"total_count"`
	}
	if err := l.api.getJSON(ctx, "/users/count", &c); err != nil {
		return 0, err
	}
	if c.TotalCount == nil || *c.TotalCount < 0 {
		return 0, fmt.Errorf("%w: /users/count answered no total_count", ErrAPI)
	}
	return *c.TotalCount, nil
}

// Page returns up to limit (1 to 500) users from offset, oldest first
// (order_by=+created_at: users created while a reconcile pages come last),
// as writes of every field, versioned by updated_at, mapped by
// Config.MapUser.
func (l *UserList) Page(ctx context.Context, offset, limit int) ([]usersync.Write, error) {
	if limit < 1 || limit > 500 || offset < 0 {
		return nil, fmt.Errorf("%w: a page is 1 to 500 users from an offset of 0 or more", usersync.ErrInvalid)
	}
	if err := l.api.checkInstance(ctx); err != nil {
		return nil, err
	}
	body, err := l.api.get(ctx, fmt.Sprintf("/users?limit=%d&offset=%d&order_by=%%2Bcreated_at", limit, offset))
	if err != nil {
		return nil, err
	}
	return l.p.decodePage(body)
}

// decodePage decodes a page of GET /users: a JSON array of users.
func (p *Provider) decodePage(body []byte) ([]usersync.Write, error) {
	var users []User
	if err := json.Unmarshal(body, &users); err != nil {
		return nil, fmt.Errorf("%w: /users answered malformed JSON: %w", ErrAPI, err)
	}
	ws := make([]usersync.Write, 0, len(users))
	for i := range users {
		if users[i].ID == "" {
			return nil, fmt.Errorf("%w: /users answered a user without an id", ErrAPI)
		}
		ws = append(ws, p.write(&users[i]))
	}
	return ws, nil
}

// Lookup returns the write of the user with the given Clerk ID, or nil if
// the instance has no such user (any longer).
func (l *UserList) Lookup(ctx context.Context, id string) (*usersync.Write, error) {
	if err := l.api.checkInstance(ctx); err != nil {
		return nil, err
	}
	var u User
	err := l.api.getJSON(ctx, "/users/"+url.PathEscape(id), &u)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if u.ID != id {
		return nil, fmt.Errorf("%w: /users/{id} answered another user", ErrAPI)
	}
	w := l.p.write(&u)
	return &w, nil
}

// write maps a user of the API or a webhook to its write.
func (p *Provider) write(u *User) usersync.Write {
	profile, fields := p.cfg.MapUser(u)
	return usersync.Write{Issuer: p.cfg.Issuer, Subject: u.ID, Version: usersync.Version(u.UpdatedAt), Fields: fields, Profile: profile}
}

var errNotFound = errors.New("clerk: not found")

// getJSON GETs path and decodes its JSON into v.
func (l *backend) getJSON(ctx context.Context, path string, v any) error {
	body, err := l.get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %s answered malformed JSON: %w", ErrAPI, path, err)
	}
	return nil
}

// get GETs path and returns its body, retrying as UserList says: after a
// 429, its Retry-After (at most a minute), else with backoff, six
// attempts in all. A wait that would outlast the context's deadline is
// not begun: get fails at once, with an error wrapping
// context.DeadlineExceeded (SessionStatus's checks wait that little).
// Each attempt first takes a token of the context's bucket, if it has one
// (withLimit: SessionStatus's), on the same terms.
func (l *backend) get(ctx context.Context, path string) ([]byte, error) {
	if err := l.waitPause(ctx); err != nil {
		return nil, fmt.Errorf("%w: %s: %w (rate limited)", ErrAPI, path, err)
	}
	const attempts = 6
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		if err := limit(ctx); err != nil {
			if last != nil {
				return nil, fmt.Errorf("%w: %s: %w (after %v)", ErrAPI, path, err, last)
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrAPI, path, err)
		}
		body, wait, err := l.try(ctx, path)
		switch {
		case err == nil || errors.Is(err, errNotFound):
			l.pause(0) // answered: the limit is not in force
		case wait > 0:
			l.pause(wait) // a 429
		}
		if err == nil || wait < 0 {
			return body, err
		}
		last = err
		if attempt == attempts {
			break
		}
		if wait == 0 {
			wait = time.Duration(rand.Int64N(int64(250*time.Millisecond<<min(attempt-1, 5)))) + 100*time.Millisecond
		}
		if !fits(ctx, wait) {
			return nil, fmt.Errorf("%w: %s: %w (a retry in %v: %w)", ErrAPI, path, last, wait.Round(time.Millisecond), context.DeadlineExceeded)
		}
		if err := l.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%w: %s: %w (after %v)", ErrAPI, path, err, last)
		}
	}
	return nil, fmt.Errorf("%w: %s: %w (%d attempts)", ErrAPI, path, last, attempts)
}

// pause holds the next requests of the Provider's lists for d after a 429 (longer pauses
// win), or lifts the pause (d = 0) after an answer.
func (l *backend) pause(d time.Duration) {
	l.paused.Lock()
	defer l.paused.Unlock()
	if d == 0 {
		l.until = time.Time{}
		return
	}
	if until := time.Now().Add(d); until.After(l.until) {
		l.until = until
	}
}

// waitPause waits until a pause that a 429 of another request set is
// over, or fails at once if the pause outlasts the context's deadline.
// The request that got the 429 waits in get's retries instead.
func (l *backend) waitPause(ctx context.Context) error {
	d := l.pausedFor()
	if d <= 0 {
		return nil
	}
	if !fits(ctx, d) {
		return fmt.Errorf("paused for another %v after a 429: %w", d.Round(time.Millisecond), context.DeadlineExceeded)
	}
	return l.sleep(ctx, d)
}

// pausedFor returns how long the pause after a 429 still lasts: 0 if
// there is none.
func (l *backend) pausedFor() time.Duration {
	l.paused.Lock()
	defer l.paused.Unlock()
	return max(time.Until(l.until), 0)
}

// fits reports whether a wait of d ends before the context's deadline,
// if it has one.
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

// try makes one request. It returns the body of a 200, or the error and
// how long to wait before another try: 0 for the default backoff, negative
// for none (the error is final).
func (l *backend) try(ctx context.Context, path string) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.base+path, nil)
	if err != nil {
		return nil, -1, fmt.Errorf("%w: %w", ErrAPI, err)
	}
	req.Header.Set("Authorization", "Bearer "+l.key)
	req.Header.Set("Accept", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, -1, fmt.Errorf("%w: %s: %w", ErrAPI, path, ctx.Err())
		}
		return nil, 0, err // the network: retry
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, l.maxBody+1))
	switch {
	case err != nil:
		return nil, 0, err
	case int64(len(body)) > l.maxBody:
		return nil, -1, fmt.Errorf("%w: %s answered more than %d bytes", ErrAPI, path, l.maxBody)
	case resp.StatusCode == http.StatusOK:
		return body, -1, nil
	case resp.StatusCode == http.StatusNotFound && clerkCode(body) == "resource_not_found":
		// Clerk's own "no such user". A 404 of anything else (a proxy, a
		// wrong APIURL) is no proof that a user is gone.
		return nil, -1, errNotFound
	case resp.StatusCode == http.StatusTooManyRequests:
		wait := time.Second
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		}
		if wait > time.Minute {
			return nil, -1, fmt.Errorf("%w: %s: rate limited for %v", ErrAPI, path, wait)
		}
		return nil, max(wait, time.Millisecond), fmt.Errorf("rate limited (429)")
	case resp.StatusCode >= 500:
		return nil, 0, fmt.Errorf("answered %d", resp.StatusCode)
	}
	// 401, 403 (a bad secret key), 400, ...: final. Clerk's error body
	// names the problem; the key is cut out should a server echo it.
	msg := strings.ReplaceAll(string(body[:min(len(body), 4096)]), l.key, "[secret key]")
	return nil, -1, fmt.Errorf("%w: %s answered %d: %.200s", ErrAPI, path, resp.StatusCode, msg)
}

// clerkCode returns the code of the first error of a Clerk error body, or
// "".
func clerkCode(body []byte) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}
