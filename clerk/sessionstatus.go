package clerk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/telemetry"
	"github.com/usersync/usersync/sessions"
)

// SessionStatusConfig configures a SessionStatus. Every field has the
// default its comment gives.
type SessionStatusConfig struct {
	// CacheFor is how long Clerk's answer that a session is active is
	// trusted: a session ended within it passes until it is over (unless
	// its webhook reaches the Sessions Set first). An answer that a
	// session is pending, or that Clerk does not know it (404), is kept
	// as long. Default 5 s; negative: every request asks Clerk
	// (concurrent ones still share one call). An answer that a session
	// has ended is kept for an hour, as a session that ended never comes
	// back.
	CacheFor time.Duration
	// CacheSize bounds the sessions whose answers are kept. Default
	// 10,000; negative: none is kept.
	CacheSize int
	// MaxWait is the longest a request waits for Clerk's answer: its
	// retries, a pause after a 429, and its turn under MaxCallsPerSecond,
	// included. A request that would wait longer is answered 503 with
	// Retry-After. Default 2 s.
	MaxWait time.Duration
	// MaxCallsPerSecond bounds the rate of its requests to the Backend
	// API (GET /sessions/{id}, their retries, and the instance check's
	// GET /jwks), shared by every request of the SessionStatus: a token
	// bucket that holds a second's worth of them (at least one), for a
	// burst, and refills at that rate. A call waits for its turn within
	// what is left of MaxWait; one whose turn comes later is not made:
	// its requests are answered 503 with Retry-After (until its turn),
	// never let through. Default 10: a tenth of Clerk's rate limit of a
	// production instance (1,000 requests per 10 s, shared by every
	// caller of its secret key: the lists, reconciles and completions
	// too); a development instance's is 100 per 10 s, so lower it there
	// if the app makes other calls. With CacheFor, it bounds the
	// sessions a strict route serves without 503s: about
	// MaxCallsPerSecond × CacheFor at once. Negative: no limit.
	MaxCallsPerSecond float64
	// Sessions, if set, records with Set.End every session Clerk reports
	// as ended (its status ended, removed, revoked, expired, abandoned or
	// replaced), so that every replica refuses its tokens from then on,
	// without asking Clerk; a session the Set holds as ended is refused
	// without a call. A session Clerk does not know (404) is not
	// recorded: it is refused by this SessionStatus only, for CacheFor,
	// as the 404 of a session created a moment ago may be transient.
	// Wire sets App.Sessions.
	Sessions *sessions.Set
	// ErrorHandler writes Require's refusals, as usersync.Config.ErrorHandler
	// does the Syncer's (the headers are set before it is called): 401
	// for a request without an identity, with one of another issuer or
	// without a session (a JWT template's token), or of a session Clerk
	// reports as not active (ended, removed, revoked, ...: an error
	// wrapping usersync.ErrSessionEnded; pending, or unknown to Clerk:
	// usersync.ErrInvalidToken); 503, with Retry-After, when Clerk's
	// answer cannot be had in MaxWait (MaxCallsPerSecond included).
	// Default: the status text as text/plain, such as "unauthorized".
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Realm is the realm of the 401's WWW-Authenticate challenge. Default
	// "usersync", the Syncer's.
	Realm string
	// Logger logs the first of a run of failed calls, and the first that
	// succeeds after them, never a session's or a user's ID. Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock of the cache. Default time.Now.
	Now func() time.Time
}

// SessionStatus asks Clerk's Backend API (GET /sessions/{id}) whether a
// session is active, for the routes that want Clerk's own word: a session
// token passes networkless verification for up to a minute after its
// session ended, and the session.* webhooks (Config.Sessions) close that
// window only once they arrive. Require is its middleware; make one with
// Provider.SessionStatus. It is safe for concurrent use.
//
// Its answers are cached (SessionStatusConfig.CacheFor), the requests of
// one session share one call, at most 8 calls are under way at once, and
// its requests to the Backend API are rate-limited
// (SessionStatusConfig.MaxCallsPerSecond, default 10 a second): a request
// whose call cannot start within MaxWait is answered 503 with
// Retry-After, never let through. Its calls are those of the Provider's
// lists (UserList, OrganizationList), which it shares: the same client,
// the same check, before the first, that the secret key is the issuer's
// instance's, and the same pause of every request after a 429 (Clerk's
// rate limit is the instance's: 100 requests per 10 s in development,
// 1,000 in production). So it makes at most one call per session every
// CacheFor, and at most MaxCallsPerSecond in all.
//
// A session Clerk reports as ended is recorded in
// SessionStatusConfig.Sessions, for every route of every replica; one it
// does not know (404) is refused by this SessionStatus only, for
// CacheFor.
//
// Its methods on a nil *SessionStatus (App.SessionStatus without a secret
// key) fail: Require panics when it is called, as a wiring mistake; Check
// and Active return an error.
type SessionStatus struct {
	cfg    SessionStatusConfig
	issuer string
	api    *backend
	log    *slog.Logger
	calls  chan struct{} // a semaphore: the calls under way
	limit  *bucket       // MaxCallsPerSecond; nil: no limit

	mu      sync.Mutex
	cache   map[string]answer  // by session ID
	flights map[string]*flight // the calls under way, by session ID
	failing bool               // the last call failed (logged once)
	limited time.Time          // when a call over MaxCallsPerSecond was last logged
}

// answer is what Clerk said of a session.
type answer struct {
	state   sessionState
	subject string    // the session's user_id; "" for a session Clerk does not know
	until   time.Time // cached until then
}

type sessionState uint8

const (
	notActive sessionState = iota // pending, or a state this package does not know
	active
	ended   // for good: ended, removed, revoked, expired, abandoned, replaced
	unknown // to Clerk (404): maybe a session created a moment ago, so not recorded
)

// flight is a call under way: its waiters read res and err once done is
// closed.
type flight struct {
	done chan struct{}
	res  answer
	err  error
}

const (
	// maxCalls bounds the calls under way: a burst of new sessions (after
	// a deploy) is spread out instead of firing at once.
	maxCalls = 8
	// endedFor is how long an answer that a session has ended is cached:
	// by then every token of it has long expired (Clerk's live 60 s).
	endedFor = time.Hour
	// retryLater is the Retry-After of a 503 without a pause after a 429.
	retryLater = 5 * time.Second
	// maxSessionID is the longest session ID asked about (a
	// sessions.Ending's limit).
	maxSessionID = 255
	// defaultCallsPerSecond is SessionStatusConfig.MaxCallsPerSecond's
	// default.
	defaultCallsPerSecond = 10
)

// SessionStatus returns the strict mode of the instance: a SessionStatus
// whose Require admits only the sessions Clerk reports as active. It
// needs Config.SecretKey: without one, with a negative MaxWait, or with a
// MaxCallsPerSecond that is not a number, it fails with an error wrapping
// usersync.ErrInvalid.
func (p *Provider) SessionStatus(cfg SessionStatusConfig) (*SessionStatus, error) {
	api, err := p.backend()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("%w: clerk.SessionStatusConfig.MaxWait is negative", usersync.ErrInvalid)
	case math.IsNaN(cfg.MaxCallsPerSecond):
		return nil, fmt.Errorf("%w: clerk.SessionStatusConfig.MaxCallsPerSecond is not a number", usersync.ErrInvalid)
	}
	config.Default(&cfg.MaxCallsPerSecond, defaultCallsPerSecond)
	config.Default(&cfg.CacheFor, 5*time.Second)
	config.Default(&cfg.CacheSize, 10_000)
	config.Default(&cfg.MaxWait, 2*time.Second)
	config.Default(&cfg.Realm, "usersync")
	cfg.Realm = strings.NewReplacer(`"`, "", `\`, "").Replace(cfg.Realm)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &SessionStatus{
		cfg: cfg, issuer: p.cfg.Issuer, api: api, log: telemetry.Logger(cfg.Logger), calls: make(chan struct{}, maxCalls),
		cache: map[string]answer{}, flights: map[string]*flight{},
	}
	if cfg.MaxCallsPerSecond > 0 && !math.IsInf(cfg.MaxCallsPerSecond, 1) {
		s.limit = newBucket(cfg.MaxCallsPerSecond, time.Now)
	}
	return s, nil
}

// sessionError is the refusal of an identity: its Description is the
// error_description of the 401's challenge.
type sessionError struct {
	desc string
	is   error
}

func (e *sessionError) Error() string       { return "clerk: " + e.desc }
func (e *sessionError) Unwrap() error       { return e.is }
func (e *sessionError) Description() string { return e.desc }

var (
	errSessionEnded     = &sessionError{"session ended", usersync.ErrSessionEnded}
	errSessionNotActive = &sessionError{"session not active", usersync.ErrInvalidToken}
	errSessionNotFound  = &sessionError{"session not found", usersync.ErrInvalidToken}
	errNotSessionToken  = &sessionError{"not a session token", usersync.ErrInvalidToken}
	errOtherIssuer      = &sessionError{"token of another issuer", usersync.ErrInvalidToken}
)

// unavailableError reports a session whose status could not be had from
// the Backend API in MaxWait: not the token's fault, 503.
type unavailableError struct {
	msg        string // err's text, without the session's ID
	err        error
	retryAfter time.Duration
}

func (e *unavailableError) Error() string {
	return "clerk: the session's status could not be had from the Backend API: " + e.msg
}
func (e *unavailableError) Unwrap() error { return e.err }

// HTTPStatus is 503: try again shortly.
func (e *unavailableError) HTTPStatus() int { return http.StatusServiceUnavailable }

// RetryAfter is how long to wait before trying again: the rest of the
// pause after a 429, until the call's turn under MaxCallsPerSecond, or a
// few seconds.
func (e *unavailableError) RetryAfter() time.Duration { return e.retryAfter }

// errNilSessionStatus is the error of Check and Active on a nil
// *SessionStatus, and the panic of Require.
var errNilSessionStatus = errors.New("clerk: App.SessionStatus is nil: the strict mode needs Config.SecretKey")

// Active reports whether Clerk holds the session sessionID active, from
// the cache or a call. A session it reports as ended, removed, revoked,
// expired, abandoned or replaced is recorded in
// SessionStatusConfig.Sessions, if set; a pending one, or one it does not
// know (404), is not active, and not recorded. It fails (with an error
// whose HTTPStatus is 503, wrapping ErrAPI or the context's error) when
// the answer cannot be had in MaxWait (MaxCallsPerSecond included), or
// before ctx ends. On a nil *SessionStatus it fails with an error that
// says so.
func (s *SessionStatus) Active(ctx context.Context, sessionID string) (bool, error) {
	if s == nil {
		return false, errNilSessionStatus
	}
	if sessionID == "" || len(sessionID) > maxSessionID {
		return false, nil
	}
	a, err := s.lookup(ctx, sessionID)
	return a.state == active, err
}

// Check returns nil if the identity's session is one Clerk holds active
// (Active), else the error Require refuses it with: usersync.ErrNoToken
// for a nil identity, an error wrapping usersync.ErrSessionEnded for a
// session that has ended (Description "session ended"), one wrapping
// usersync.ErrInvalidToken for an identity of another issuer, without a
// session, or whose session is pending ("session not active"), unknown to
// Clerk ("session not found") or not the identity's subject's, and one
// whose HTTPStatus is 503 when Clerk's answer cannot be had. For a check
// outside Require: the first message of a WebSocket, say. On a nil
// *SessionStatus it fails with an error that says so (a server error, not
// the token's).
func (s *SessionStatus) Check(ctx context.Context, id *usersync.Identity) error {
	switch {
	case s == nil:
		return errNilSessionStatus
	case id == nil:
		return usersync.ErrNoToken
	case strings.TrimRight(id.Issuer, "/") != s.issuer:
		return errOtherIssuer
	case id.SessionID == "" || len(id.SessionID) > maxSessionID:
		return errNotSessionToken
	case s.cfg.Sessions != nil && errors.Is(s.cfg.Sessions.CheckSession(id), usersync.ErrSessionEnded):
		return errSessionEnded // its webhook came: no need to ask
	}
	a, err := s.lookup(ctx, id.SessionID)
	switch {
	case err != nil:
		return err
	case a.state == ended:
		return errSessionEnded
	case a.state == unknown:
		return errSessionNotFound
	case a.state != active || a.subject != id.Subject:
		return errSessionNotActive
	}
	return nil
}

// Require is the middleware of the routes that want Clerk's own word that
// the session is active. It sits behind the Syncer's RequireUser or
// RequireIdentity, whose identity it reads from the context
// (usersync.IdentityFromContext), and passes the request on only if Check
// admits it. Otherwise SessionStatusConfig.ErrorHandler answers: 401,
// with a WWW-Authenticate challenge (error="invalid_token",
// error_description="session ended" for an ended session), or 503 with
// Retry-After when Clerk cannot be asked: a request is never let through
// unchecked.
//
// On a nil *SessionStatus (App.SessionStatus without Config.SecretKey),
// Require panics when it is called, as usersync's middlewares do without
// an Extractor: a wiring mistake fails at start, not on every request.
func (s *SessionStatus) Require(next http.Handler) http.Handler {
	if s == nil {
		panic(errNilSessionStatus.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := usersync.IdentityFromContext(r.Context())
		if err := s.Check(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fail answers a request Require refuses: it sets the headers of its
// status and calls the error handler.
func (s *SessionStatus) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusUnauthorized
	var unavailable *unavailableError
	if errors.As(err, &unavailable) {
		status = http.StatusServiceUnavailable
		secs := int64((unavailable.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	} else {
		challenge := `Bearer realm="` + s.cfg.Realm + `"`
		var d interface{ Description() string }
		if errors.As(err, &d) {
			challenge += `, error="invalid_token", error_description="` + d.Description() + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.DebugContext(r.Context(), "clerk: session refused", "reason", err.Error())
		}
	}
	if s.cfg.ErrorHandler != nil {
		s.cfg.ErrorHandler(w, r, status, err)
		return
	}
	http.Error(w, strings.ToLower(http.StatusText(status)), status)
}

// lookup returns the cached answer of the session, or joins the call
// that asks for it, or makes one.
func (s *SessionStatus) lookup(ctx context.Context, id string) (answer, error) {
	s.mu.Lock()
	if a, ok := s.cache[id]; ok {
		if s.cfg.Now().Before(a.until) {
			s.mu.Unlock()
			return a, nil
		}
		delete(s.cache, id)
	}
	f := s.flights[id]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		s.flights[id] = f
		// Not bound to this request: the others that wait for it go on
		// if it goes away. MaxWait bounds it.
		go s.fly(context.WithoutCancel(ctx), id, f)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return answer{}, &unavailableError{msg: ctx.Err().Error(), err: ctx.Err(), retryAfter: retryLater}
	}
}

// fly makes the call of f, records an ending, caches the answer and ends
// f.
func (s *SessionStatus) fly(ctx context.Context, id string, f *flight) {
	call, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
	a, err := s.ask(call, id)
	cancel()
	if err != nil {
		err = s.unavailable(id, err)
	}
	if err == nil && a.state == ended && s.cfg.Sessions != nil {
		// Before the waiters learn of it, so that a refused request finds
		// the ending recorded; with a time of its own, not what is left of
		// the call's.
		end, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
		if err := s.cfg.Sessions.End(end, sessions.Ending{Issuer: s.issuer, SessionID: id, Subject: a.subject}); err != nil {
			s.log.WarnContext(ctx, "clerk: recording a session that Clerk reports as ended failed; it is refused all the same", "error", err)
		}
		cancel()
	}
	limited := errors.As(err, new(*rateLimitedError))
	s.mu.Lock()
	delete(s.flights, id)
	if err == nil {
		s.keep(id, a)
	}
	was := s.failing
	logLimit := limited && time.Since(s.limited) >= time.Minute
	if logLimit {
		s.limited = time.Now()
	}
	if !limited { // held back by its own limit: says nothing of the Backend API
		s.failing = err != nil
	}
	s.mu.Unlock()
	switch {
	case limited:
		if logLimit {
			s.log.WarnContext(ctx, "clerk: strict mode over clerk.SessionStatusConfig.MaxCallsPerSecond: requests answered 503 (logged at most once a minute); raise it, or CacheFor, if Clerk's rate limit allows",
				"max_calls_per_second", s.cfg.MaxCallsPerSecond)
		}
	case err != nil && !was:
		s.log.ErrorContext(ctx, "clerk: asking the Backend API for a session's status failed; strict routes answer 503 until it works again", "error", err)
	case err == nil && was:
		s.log.InfoContext(ctx, "clerk: asking the Backend API for a session's status works again")
	}
	f.res, f.err = a, err
	close(f.done)
}

// ask asks the Backend API for the session, once the instance check has
// passed and a call's turn has come: one of the maxCalls, then, for each
// request, a token of MaxCallsPerSecond.
func (s *SessionStatus) ask(ctx context.Context, id string) (answer, error) {
	ctx = withLimit(ctx, s.limit)
	select {
	case s.calls <- struct{}{}:
	case <-ctx.Done():
		return answer{}, fmt.Errorf("%w: waiting for the calls under way: %w", ErrAPI, ctx.Err())
	}
	defer func() { <-s.calls }()
	if err := s.api.checkInstance(ctx); err != nil {
		return answer{}, err
	}
	var got Session
	err := s.api.getJSON(ctx, "/sessions/"+url.PathEscape(id), &got)
	switch {
	case errors.Is(err, errNotFound):
		return answer{state: unknown}, nil
	case err != nil:
		return answer{}, err
	case got.ID != id:
		return answer{}, fmt.Errorf("%w: /sessions/{id} answered another session", ErrAPI)
	case got.Status == statusActive:
		return answer{state: active, subject: got.UserID}, nil
	case endedStatus(got.Status):
		return answer{state: ended, subject: got.UserID}, nil
	}
	return answer{state: notActive, subject: got.UserID}, nil
}

// unavailable wraps the failure of a call as the error of its waiters,
// without the session's ID in its text.
func (s *SessionStatus) unavailable(id string, err error) error {
	msg := strings.ReplaceAll(err.Error(), url.PathEscape(id), "{id}")
	msg = strings.ReplaceAll(msg, id, "{id}")
	retry := s.api.pausedFor()
	if limited := (*rateLimitedError)(nil); errors.As(err, &limited) {
		retry = max(retry, limited.wait)
	}
	if retry <= 0 {
		retry = retryLater
	}
	return &unavailableError{msg: msg, err: err, retryAfter: retry}
}

// keep caches a, for endedFor if ended, else (active, pending, unknown)
// for CacheFor, making room if the cache is full. s.mu is held.
func (s *SessionStatus) keep(id string, a answer) {
	d := s.cfg.CacheFor
	if a.state == ended {
		d = endedFor
	}
	if d <= 0 || s.cfg.CacheSize <= 0 {
		return
	}
	now := s.cfg.Now()
	if len(s.cache) >= s.cfg.CacheSize {
		for k, c := range s.cache {
			if !now.Before(c.until) {
				delete(s.cache, k)
			}
		}
		// Still full: drop an eighth, the first that the map's random
		// order gives, so that the next inserts need no sweep.
		for k := range s.cache {
			if len(s.cache) < s.cfg.CacheSize-s.cfg.CacheSize/8 {
				break
			}
			delete(s.cache, k)
		}
	}
	a.until = now.Add(d)
	s.cache[id] = a
}
