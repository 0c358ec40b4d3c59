// Package jwtverify verifies bearer tokens (JWTs) into usersync
// identities: per-issuer key sets fetched from each issuer's JWKS (or one
// PEM key) and kept fresh, signatures checked with golang-jwt's signing
// methods, a cache of verified tokens, and the request side (the
// Authorization header, a session cookie and its cross-site check). A
// *Verifier is a usersync.Extractor: set it as usersync.Config.Extractor
// and the Syncer's RequireUser, LoadUser and RequireIdentity use it.
//
//	verifier, err := jwtverify.New(ctx, jwtverify.Config{Issuers: []jwtverify.Issuer{{URL: "https://example.clerk.accounts.dev"}}})
//	syncer, err := usersync.New(usersync.Config{Store: store, Extractor: verifier})
//
// Failures wrap the token errors of package usersync (ErrNoToken,
// ErrInvalidToken, ErrTokenExpired, ErrKeysUnavailable).
package jwtverify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/config"
	"github.com/usersync/usersync/internal/pubkey"
	"github.com/usersync/usersync/internal/telemetry"
)

// tokenError is the reason a token is invalid. It wraps ErrInvalidToken
// (or ErrTokenExpired) of package usersync, and its Description is the
// RFC 6750 error_description the middlewares send.
type tokenError struct {
	desc string
	is   error
}

func (e *tokenError) Error() string { return "jwtverify: " + e.desc }
func (e *tokenError) Unwrap() error { return e.is }

// Description returns the reason, for the 401 challenge's
// error_description.
func (e *tokenError) Description() string { return e.desc }

var (
	errTooLarge        = &tokenError{"token too large", usersync.ErrInvalidToken}
	errMalformed       = &tokenError{"malformed token", usersync.ErrInvalidToken}
	errUnknownIssuer   = &tokenError{"unknown issuer", usersync.ErrInvalidToken}
	errBadSignature    = &tokenError{"bad signature", usersync.ErrInvalidToken}
	errExpired         = &tokenError{"token expired", usersync.ErrTokenExpired}
	errNotYetValid     = &tokenError{"token not yet valid", usersync.ErrInvalidToken}
	errAudience        = &tokenError{"audience not accepted", usersync.ErrInvalidToken}
	errAuthorizedParty = &tokenError{"authorized party not accepted", usersync.ErrInvalidToken}
	errNotAccepted     = &tokenError{"claims not accepted", usersync.ErrInvalidToken}
	errNoSession       = &tokenError{"not a session token", usersync.ErrInvalidToken}
)

// saneTime reports whether a time claim, if present, is between the epoch
// and the year 9999 (the range of a usersync.Version).
func saneTime(d numericDate) bool {
	return !d.set || d.Unix() >= 0 && d.Unix() <= 253402300799
}

// canonicalIssuer is an issuer without trailing slashes, as
// usersync.TokenIdentifier takes it.
func canonicalIssuer(issuer string) string { return strings.TrimRight(issuer, "/") }

// Issuer describes one trusted token issuer.
type Issuer struct {
	// URL is the iss of its tokens, such as Clerk's Frontend API URL
	// "https://example.clerk.accounts.dev". Required. A trailing "/" is
	// ignored here and in tokens.
	URL string
	// JWKSURL serves the issuer's signing keys. Default: URL +
	// "/.well-known/jwks.json".
	JWKSURL string
	// PublicKeyPEM, if set, is the issuer's one signing key in PEM form
	// (Clerk's "JWT public key", CLERK_JWT_KEY in Clerk's SDKs): tokens are
	// then checked against it alone, with no network call ever.
	PublicKeyPEM string
	// Audiences, if set, are the accepted aud values: a token must name at
	// least one. Clerk session tokens carry no aud; leave it empty for them.
	Audiences []string
	// AuthorizedParties, if set, are the accepted azp values (Clerk: your
	// app's origins, such as "https://app.example.com"). A token without azp
	// is accepted; one with another azp is not.
	AuthorizedParties []string
	// RequireSessionID, if set, refuses tokens without a sid claim (the
	// OpenID Connect session ID). Clerk's session tokens carry one; tokens
	// of its JWT templates do not, and a template may map claims from
	// metadata the user can edit, so package clerk sets it.
	RequireSessionID bool
	// MetadataClaim, if set, names a claim whose JSON value becomes the
	// identity's Metadata, stored as Profile.Metadata: for a Clerk session
	// token customised with {"metadata": "{{user.public_metadata}}"}, set
	// it to "metadata".
	MetadataClaim string
}

// Config configures a Verifier. Only Issuers is required; every other
// field has the default its comment gives.
type Config struct {
	// Issuers are the trusted issuers. Each has its own keys: a token is
	// checked only against the keys of the issuer its iss names.
	Issuers []Issuer
	// Algorithms are the accepted signing algorithms. Default: RS256, ES256,
	// EdDSA. "none" and the HMAC algorithms are never accepted.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 5s.
	Leeway time.Duration
	// MaxTokenSize caps a token's length before anything is decoded.
	// Default 16 KiB.
	MaxTokenSize int
	// CacheSize is how many verified tokens are remembered, so that a client
	// sending the same token on every request pays for its signature once.
	// Default 10,000; negative turns the cache off. An entry holds the
	// token's text and its decoded claims: at Clerk's ~1 KB tokens, 10,000
	// take about 25 MB.
	CacheSize int
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout.
	// Its transport must honour the request's context: Close cancels
	// the fetches under way and waits for them.
	HTTPClient *http.Client
	// MaxJWKSSize caps a JWKS response body. Default 1 MiB.
	MaxJWKSSize int64
	// RefreshInterval is how often key sets are refreshed in the
	// background. Default 1h. A failed fetch is retried sooner, with a
	// backoff from 250ms to 4s.
	RefreshInterval time.Duration
	// UnknownKeyRefresh is the least time between two fetches triggered
	// by tokens with an unknown kid (a key rotation): a storm of tokens with
	// made-up kids costs one fetch a minute. Default 1m.
	UnknownKeyRefresh time.Duration
	// UnknownKeyWait is the longest a request waits for a fetch of its
	// issuer's keys. Default 2s.
	UnknownKeyWait time.Duration
	// StartupWait is the longest New waits for the first fetch of
	// every issuer's keys, fetched in parallel. An issuer whose keys are
	// not there by then is fetched again in the background and when a
	// token needs it. Default 5s.
	StartupWait time.Duration
	// MapIdentity, if set, runs once per verified token (cached
	// verifications reuse its result). It may fill Identity fields from
	// claims of other names, from Identity.Claims, and attach app data to
	// Identity.Data. An error rejects the token as ErrInvalidToken
	// ("claims not accepted").
	MapIdentity func(*usersync.Identity) error
	// Sessions, if set, refuses the tokens of ended sessions, cached or
	// not, in Verify and Identify: for a verifier used outside a Syncer
	// (whose own usersync.Config.Sessions covers its middlewares). A
	// *sessions.Set is one.
	Sessions usersync.SessionChecker
	// Cookie is the cookie a token is also read from when a request has no
	// Authorization header. Default "__session" (Clerk's same-origin
	// session cookie); "-" reads no cookie.
	//
	// A browser sends cookies with requests that other sites make, so a
	// request authenticated by the cookie that may change state (any method
	// but GET, HEAD, OPTIONS and TRACE) must also be JSON (Content-Type:
	// application/json) from the app's own origin, or from one of the
	// issuer's AuthorizedParties, as its Sec-Fetch-Site or Origin header
	// says; otherwise it is refused with 403. Keep GET handlers free of side
	// effects. Requests with an Authorization header need no such check.
	Cookie string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs the key fetches that fail, and the first that succeeds
	// after them. (Rejected tokens and failed requests are logged by the
	// Syncer's middlewares, with the trace ID of the request's span.)
	// Default slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the verifier's metrics:
	// usersync_token_verifications_total by result (ok, cached: a hit of
	// the token cache, expired, bad_signature, unknown_issuer,
	// keys_unavailable, ...), usersync_token_cache_misses_total and
	// usersync_jwks_fetches_total by issuer and result (ok, error).
	// TracerProvider receives a span per verification that the cache did
	// not answer, below the span of the caller's context (none without
	// one). Default: the global providers of go.opentelemetry.io/otel,
	// which do nothing until the app installs the OpenTelemetry SDK.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// Verifier verifies bearer tokens into identities. It is safe for
// concurrent use; Close stops its background key refreshes and fetches,
// and waits for them.
type Verifier struct {
	cfg     Config
	issuers map[string]*issuerKeys       // by canonical issuer
	methods map[string]jwt.SigningMethod // the accepted algorithms
	cache   *tokenCache
	tel     *verifierTelemetry
	cancel  context.CancelFunc
	tasks   tasks // every goroutine the verifier starts: refreshes and fetches
}

// tasks runs a verifier's goroutines, so that Close can wait for every one
// of them: once Close has begun, none starts.
type tasks struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// goUnlessClosed runs f in a goroutine, unless Close has begun, and reports
// whether it did.
func (t *tasks) goUnlessClosed(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Go(f) // under mu: every Add happens before close's Wait
	return true
}

// close refuses new goroutines and waits for the running ones.
func (t *tasks) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}

// New returns a verifier for cfg. It fetches every issuer's keys
// at once, in parallel, waiting at most StartupWait; a failure is logged,
// not fatal. The keys are refreshed in the background until ctx ends or
// Close is called. A malformed config is an error wrapping ErrInvalid.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if len(cfg.Issuers) == 0 {
		return nil, fmt.Errorf("%w: no issuers", usersync.ErrInvalid)
	}
	config.Default(&cfg.Leeway, 5*time.Second)
	config.Default(&cfg.MaxTokenSize, 16<<10)
	config.Default(&cfg.CacheSize, 10_000)
	config.Default(&cfg.MaxJWKSSize, 1<<20)
	config.Default(&cfg.RefreshInterval, time.Hour)
	config.Default(&cfg.UnknownKeyRefresh, time.Minute)
	config.Default(&cfg.UnknownKeyWait, 2*time.Second)
	config.Default(&cfg.StartupWait, 5*time.Second)
	config.Default(&cfg.Cookie, "__session")
	if cfg.Algorithms == nil {
		cfg.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	}
	for _, a := range cfg.Algorithms {
		if a == "none" || strings.HasPrefix(a, "HS") {
			return nil, fmt.Errorf("%w: algorithm %q cannot verify tokens of a public issuer", usersync.ErrInvalid, a)
		}
	}
	methods := make(map[string]jwt.SigningMethod, len(cfg.Algorithms))
	for _, a := range cfg.Algorithms {
		if methods[a] = jwt.GetSigningMethod(a); methods[a] == nil {
			return nil, fmt.Errorf("%w: unknown algorithm %q", usersync.ErrInvalid, a)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = telemetry.Logger(cfg.Logger)
	cfg.HTTPClient = keysClient(cfg.HTTPClient)

	v := &Verifier{
		cfg:     cfg,
		issuers: make(map[string]*issuerKeys, len(cfg.Issuers)),

		methods: methods,

		tel: newVerifierTelemetry(cfg.MeterProvider, cfg.TracerProvider),
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	ctx, v.cancel = context.WithCancel(ctx)
	for _, ic := range cfg.Issuers {
		k, err := v.newIssuerKeys(ctx, ic)
		if err == nil && v.issuers[k.cfg.URL] != nil {
			err = fmt.Errorf("%w: issuer %q listed twice", usersync.ErrInvalid, k.cfg.URL)
		}
		if err != nil {
			v.cancel()
			return nil, err
		}
		v.issuers[k.cfg.URL] = k
	}

	startup, cancel := context.WithTimeout(ctx, cfg.StartupWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, k := range v.issuers {
		if k.static != nil {
			continue
		}
		wg.Go(func() { k.fetch(startup, 0) })
	}
	wg.Wait()
	for _, k := range v.issuers {
		if k.static == nil {
			v.tasks.goUnlessClosed(func() { k.run(ctx) })
		}
	}
	return v, nil
}

// newIssuerKeys checks one issuer's configuration. Its fetches end with
// ctx.
func (v *Verifier) newIssuerKeys(ctx context.Context, ic Issuer) (*issuerKeys, error) {
	ic.URL = canonicalIssuer(ic.URL)
	if ic.URL == "" {
		return nil, fmt.Errorf("%w: issuer with an empty URL", usersync.ErrInvalid)
	}
	k := &issuerKeys{
		client: v.cfg.HTTPClient, maxSize: v.cfg.MaxJWKSSize, log: v.cfg.Logger, now: v.cfg.Now,
		refresh: v.cfg.RefreshInterval, unknownKey: v.cfg.UnknownKeyRefresh, wait: v.cfg.UnknownKeyWait,
		base: ctx, tasks: &v.tasks, tel: v.tel,
	}
	if v.cache != nil {
		k.removed = v.cache.removeKeys
	}
	if ic.PublicKeyPEM != "" {
		key, err := pubkey.ParsePEM(ic.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: public key of %q: %w", usersync.ErrInvalid, ic.URL, err)
		}
		k.static, k.staticThumb = key, thumbprint(key)
	} else {
		if ic.JWKSURL == "" {
			ic.JWKSURL = ic.URL + "/.well-known/jwks.json"
		}
		// Keys fetched over plain http could be swapped by anyone on the
		// path: http only to this machine (a dev issuer, a test).
		if err := pubkey.CheckURL(ic.JWKSURL); err != nil {
			return nil, fmt.Errorf("%w: JWKS URL of %q: %w", usersync.ErrInvalid, ic.URL, err)
		}
	}
	k.cfg = ic
	return k, nil
}

// Close stops the background key refreshes and cancels every JWKS fetch
// under way (of the startup, of a refresh, or for a token's unknown kid),
// then waits for every goroutine the verifier started to return: once
// Close has returned, the verifier runs nothing in the background and
// makes no more JWKS requests. (Its key sets are keyfunc.Keyfuncs over
// memory storage, which start no goroutines of their own.) Verify keeps
// working with the keys it has, fetching no others: where it would have
// fetched the keys for a token, it fails with ErrKeysUnavailable. Close
// may be called more than once; it always returns nil.
func (v *Verifier) Close() error {
	v.cancel() // first, so that the fetches waited for end at once
	v.tasks.close()
	return nil
}

// Verify checks token and returns its identity. The identity may be shared
// with other callers of the same token (it comes from a cache): treat it as
// read-only. A failure wraps usersync.ErrNoToken, ErrInvalidToken (for an
// expired token, ErrTokenExpired) or ErrKeysUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (*usersync.Identity, error) {
	now := v.cfg.Now()
	if v.cache != nil && token != "" && len(token) <= v.cfg.MaxTokenSize {
		if id := v.cache.get(token, now); id != nil {
			if v.cfg.Sessions != nil {
				if err := v.cfg.Sessions.CheckSession(id); err != nil {
					v.tel.refused(ctx, err)
					return nil, err
				}
			}
			v.tel.cached(ctx)
			return id, nil
		}
		v.tel.missed(ctx)
	}
	ctx, span := v.tel.start(ctx)
	id, err := v.verify(ctx, token, now)
	if err == nil && v.cfg.Sessions != nil {
		if err = v.cfg.Sessions.CheckSession(id); err != nil {
			id = nil
		}
	}
	v.tel.verified(ctx, span, err)
	return id, err
}

// verify verifies a token the cache did not hold, and caches it.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*usersync.Identity, error) {
	if token == "" {
		return nil, usersync.ErrNoToken
	}
	if len(token) > v.cfg.MaxTokenSize {
		return nil, errTooLarge
	}
	// header.claims.signature, each base64url: golang-jwt's format, taken
	// apart here so that the claims are decoded once (they become
	// Identity.Claims). The header is golang-jwt's: a map whose member
	// names count byte for byte, an alg that must be a string, and a kid
	// that keyfunc checks.
	head, rest, _ := strings.Cut(token, ".")
	segment, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sig, '.') >= 0 {
		return nil, fmt.Errorf("%w: not three segments", errMalformed)
	}
	var header map[string]any
	if err := decodeSegment(head, &header); err != nil || header == nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", errMalformed)
	}
	alg, _ := header["alg"].(string)
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %w", errMalformed, err)
	}
	var c tokenClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", errMalformed, err)
	}
	method := v.methods[alg]
	if method == nil {
		return nil, fmt.Errorf("%w: algorithm not accepted", errBadSignature)
	}
	signature, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %w", errMalformed, err)
	}
	// Route by the (still unverified) iss to that issuer's keys only: a
	// token naming issuer A is never checked against B's keys.
	iss := v.issuers[canonicalIssuer(c.Iss)]
	if iss == nil {
		return nil, errUnknownIssuer
	}
	t := &jwt.Token{Raw: token, Method: method, Header: header, Signature: signature}
	key, thumb, err := iss.key(ctx, t)
	switch {
	case errors.Is(err, usersync.ErrKeysUnavailable):
		return nil, usersync.ErrKeysUnavailable
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errBadSignature, err)
	}
	c.key = thumb
	if err := method.Verify(token[:len(head)+1+len(segment)], signature, key); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadSignature, err)
	}
	// The time of the checks is taken after the key lookup, which may
	// have waited for a fetch.
	if err := v.checkTimes(&c, v.cfg.Now()); err != nil {
		return nil, err
	}
	// Verified: check what the validator does not know about.
	ic := &iss.cfg
	switch {
	case c.Sub == "":
		return nil, fmt.Errorf("%w: no sub claim", errMalformed)
	case !saneTime(c.Iat) || !saneTime(c.Nbf) || !saneTime(c.Exp):
		// An issuer-signed iat of -1e16 would overflow into a version that
		// freezes every field it writes.
		return nil, fmt.Errorf("%w: iat, nbf or exp out of range", errMalformed)
	case ic.RequireSessionID && c.Sid == "":
		return nil, errNoSession
	case len(ic.Audiences) > 0 && !slices.ContainsFunc(c.Aud, func(a string) bool { return slices.Contains(ic.Audiences, a) }):
		return nil, errAudience
	case len(ic.AuthorizedParties) > 0 && c.Azp != "" && !slices.Contains(ic.AuthorizedParties, c.Azp):
		return nil, errAuthorizedParty
	}
	id := c.identity(ic.URL, raw)
	if ic.MetadataClaim != "" {
		var all map[string]json.RawMessage
		if err := json.Unmarshal(raw, &all); err != nil {
			return nil, fmt.Errorf("%w: %w", errMalformed, err)
		}
		if m := all[ic.MetadataClaim]; len(m) > 0 && string(m) != "null" {
			id.Metadata = m
		}
	}
	if v.cfg.MapIdentity != nil {
		if err := v.cfg.MapIdentity(id); err != nil {
			return nil, fmt.Errorf("%w: MapIdentity: %w", errNotAccepted, err)
		}
	}
	if v.cache != nil {
		v.cache.put(token, id, c.key, now)
		// A refresh that removed the key while this token was being
		// verified has swept the cache already: do not keep it.
		if ks := iss.keys.Load(); iss.static == nil && ks != nil && !ks.hasThumb(c.key) {
			v.cache.remove(token)
		}
	}
	return id, nil
}

// checkTimes checks the time claims of a verified token as golang-jwt's
// Validator does with WithExpirationRequired, WithIssuedAt and the
// Leeway: exp is required and must be after now - leeway; iat and nbf,
// if present, must be before now + leeway. The errors wrap golang-jwt's.
func (v *Verifier) checkTimes(c *tokenClaims, now time.Time) error {
	leeway := v.cfg.Leeway
	switch {
	case !c.Exp.set:
		return fmt.Errorf("%w: %w: exp", errMalformed, jwt.ErrTokenRequiredClaimMissing)
	case !now.Before(c.Exp.Add(leeway)):
		return fmt.Errorf("%w: %w", errExpired, jwt.ErrTokenExpired)
	case c.Iat.set && now.Before(c.Iat.Add(-leeway)):
		return fmt.Errorf("%w: %w", errNotYetValid, jwt.ErrTokenUsedBeforeIssued)
	case c.Nbf.set && now.Before(c.Nbf.Add(-leeway)):
		return fmt.Errorf("%w: %w", errNotYetValid, jwt.ErrTokenNotValidYet)
	}
	return nil
}

// keysClient returns a copy of c (default: a client with a 10 s timeout)
// that follows a redirect only to where keys may come from (see
// pubkey.CheckURL): an https JWKS URL redirecting to plain http on another
// host would let anyone on that path swap the keys.
func keysClient(c *http.Client) *http.Client {
	client := &http.Client{Timeout: 10 * time.Second}
	if c != nil {
		copied := *c // the caller's client stays as it is
		client = &copied
	}
	next := client.CheckRedirect
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := pubkey.CheckURL(req.URL.String()); err != nil {
			return fmt.Errorf("JWKS redirected to a URL that is %w", err)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("JWKS: stopped after 10 redirects")
		}
		return nil
	}
	return client
}
