package usersync

import (
	"context"
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

	"github.com/usersync/usersync/internal/pubkey"
	"github.com/usersync/usersync/internal/telemetry"
)

// Token errors. Verify and the middlewares fail with an error wrapping one
// of them; the error's text names the reason ("token expired", "bad
// signature", ...) and never contains the token.
var (
	// ErrNoToken reports a request without a token (or a context without
	// an identity).
	ErrNoToken = errors.New("usersync: no bearer token")

	// ErrInvalidToken reports a token that is malformed, too large,
	// expired, not yet valid, badly signed, from an unknown issuer, or for
	// another audience or authorized party.
	ErrInvalidToken = errors.New("usersync: invalid token")

	// ErrKeysUnavailable reports a token that cannot be checked because its
	// issuer's signing keys cannot be fetched (the JWKS is down or
	// unreachable). It is not the token's fault: the middlewares answer 503
	// with Retry-After, never 401.
	ErrKeysUnavailable = errors.New("usersync: the issuer's signing keys are unavailable")
)

// tokenError is the reason a token is invalid: its text is the RFC 6750
// error_description the middlewares send.
type tokenError struct{ desc string }

func (e *tokenError) Error() string { return "usersync: " + e.desc }
func (e *tokenError) Unwrap() error { return ErrInvalidToken }

var (
	errTooLarge        = &tokenError{"token too large"}
	errMalformed       = &tokenError{"malformed token"}
	errUnknownIssuer   = &tokenError{"unknown issuer"}
	errBadSignature    = &tokenError{"bad signature"}
	errExpired         = &tokenError{"token expired"}
	errNotYetValid     = &tokenError{"token not yet valid"}
	errAudience        = &tokenError{"audience not accepted"}
	errAuthorizedParty = &tokenError{"authorized party not accepted"}
	errNotAccepted     = &tokenError{"claims not accepted"}
	errNoSession       = &tokenError{"not a session token"}
)

// saneTime reports whether a time claim, if present, is between the epoch
// and the year 9999.
func saneTime(d *jwt.NumericDate) bool {
	return d == nil || versionOf(d.Time) >= 0
}

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

// VerifierConfig configures a Verifier. Only Issuers is required; every
// other field has the default its comment gives.
type VerifierConfig struct {
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
	// token's text: at Clerk's ~1 KB tokens, 10,000 take about 15 MB.
	CacheSize int
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout.
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
	// StartupWait is the longest NewVerifier waits for the first fetch of
	// every issuer's keys, fetched in parallel. An issuer whose keys are
	// not there by then is fetched again in the background and when a
	// token needs it. Default 5s.
	StartupWait time.Duration
	// MapIdentity, if set, runs once per verified token (cached
	// verifications reuse its result). It may fill Identity fields from
	// claims of other names, via Identity.Claims, and attach app data to
	// Identity.Data. An error rejects the token as ErrInvalidToken
	// ("claims not accepted").
	MapIdentity func(*Identity) error
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
	// Realm is the realm of WWW-Authenticate challenges. Default "usersync".
	Realm string
	// ErrorHandler writes the middlewares' error responses. The status
	// comes from the error, in one place:
	//
	//	ErrNoToken, ErrInvalidToken   401, with WWW-Authenticate (RFC 6750)
	//	ErrKeysUnavailable            503, with Retry-After
	//	ErrDeleted                    403
	//	a cross-site request          403 (see below)
	//	ErrInvalid                    400 (claims that cannot be stored)
	//	anything else                 500 (the store failed)
	//
	// The headers are set before it is called. Default: the status text as
	// text/plain, such as "unauthorized".
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs key fetch failures, rejected tokens (reasons only) and
	// failed requests, with the trace ID of the request's span. Default
	// slog.Default().
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
// concurrent use; Close stops its background key refreshes.
type Verifier struct {
	cfg     VerifierConfig
	issuers map[string]*issuerKeys // by canonical issuer
	parser  *jwt.Parser
	cache   *tokenCache
	tel     *verifierTelemetry
	cancel  context.CancelFunc
	running sync.WaitGroup // the background refreshes
}

// NewVerifier returns a verifier for cfg. It fetches every issuer's keys
// at once, in parallel, waiting at most StartupWait; a failure is logged,
// not fatal. The keys are refreshed in the background until ctx ends or
// Close is called. A malformed config is an error wrapping ErrInvalid.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Issuers) == 0 {
		return nil, fmt.Errorf("%w: no issuers", ErrInvalid)
	}
	setDefault(&cfg.Leeway, 5*time.Second)
	setDefault(&cfg.MaxTokenSize, 16<<10)
	setDefault(&cfg.CacheSize, 10_000)
	setDefault(&cfg.MaxJWKSSize, 1<<20)
	setDefault(&cfg.RefreshInterval, time.Hour)
	setDefault(&cfg.UnknownKeyRefresh, time.Minute)
	setDefault(&cfg.UnknownKeyWait, 2*time.Second)
	setDefault(&cfg.StartupWait, 5*time.Second)
	setDefault(&cfg.Cookie, "__session")
	setDefault(&cfg.Realm, "usersync")
	cfg.Realm = strings.NewReplacer(`"`, "", `\`, "").Replace(cfg.Realm)
	if cfg.Algorithms == nil {
		cfg.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	}
	for _, a := range cfg.Algorithms {
		if a == "none" || strings.HasPrefix(a, "HS") {
			return nil, fmt.Errorf("%w: algorithm %q cannot verify tokens of a public issuer", ErrInvalid, a)
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
		parser: jwt.NewParser(
			jwt.WithValidMethods(cfg.Algorithms),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(cfg.Now),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
		),
		tel: newVerifierTelemetry(cfg.MeterProvider, cfg.TracerProvider),
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	ctx, v.cancel = context.WithCancel(ctx)
	for _, ic := range cfg.Issuers {
		k, err := v.newIssuerKeys(ctx, ic)
		if err == nil && v.issuers[k.cfg.URL] != nil {
			err = fmt.Errorf("%w: issuer %q listed twice", ErrInvalid, k.cfg.URL)
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
			v.running.Go(func() { k.run(ctx) })
		}
	}
	return v, nil
}

// newIssuerKeys checks one issuer's configuration. Its fetches end with
// ctx.
func (v *Verifier) newIssuerKeys(ctx context.Context, ic Issuer) (*issuerKeys, error) {
	ic.URL = canonicalIssuer(ic.URL)
	if ic.URL == "" {
		return nil, fmt.Errorf("%w: issuer with an empty URL", ErrInvalid)
	}
	k := &issuerKeys{
		client: v.cfg.HTTPClient, maxSize: v.cfg.MaxJWKSSize, log: v.cfg.Logger, now: v.cfg.Now,
		refresh: v.cfg.RefreshInterval, unknownKey: v.cfg.UnknownKeyRefresh, wait: v.cfg.UnknownKeyWait,
		base: ctx, tel: v.tel,
	}
	if v.cache != nil {
		k.removed = v.cache.removeKeys
	}
	if ic.PublicKeyPEM != "" {
		key, err := pubkey.ParsePEM(ic.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: public key of %q: %w", ErrInvalid, ic.URL, err)
		}
		k.static, k.staticThumb = key, thumbprint(key)
	} else {
		if ic.JWKSURL == "" {
			ic.JWKSURL = ic.URL + "/.well-known/jwks.json"
		}
		// Keys fetched over plain http could be swapped by anyone on the
		// path: http only to this machine (a dev issuer, a test).
		if err := pubkey.CheckURL(ic.JWKSURL); err != nil {
			return nil, fmt.Errorf("%w: JWKS URL of %q: %w", ErrInvalid, ic.URL, err)
		}
	}
	k.cfg = ic
	return k, nil
}

// Close stops the background key refreshes and any fetch under way, and
// waits for them. Verify keeps working with the keys it has.
func (v *Verifier) Close() error {
	v.cancel()
	v.running.Wait()
	return nil
}

// Verify checks token and returns its identity. The identity may be shared
// with other callers of the same token (it comes from a cache): treat it as
// read-only. A failure wraps ErrNoToken, ErrInvalidToken or
// ErrKeysUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	now := v.cfg.Now()
	if v.cache != nil && token != "" && len(token) <= v.cfg.MaxTokenSize {
		if id := v.cache.get(token, now); id != nil {
			v.tel.cached(ctx)
			return id, nil
		}
		v.tel.missed(ctx)
	}
	ctx, span := v.tel.start(ctx)
	id, err := v.verify(ctx, token, now)
	v.tel.verified(ctx, span, err)
	return id, err
}

// verify verifies a token the cache did not hold, and caches it.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*Identity, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > v.cfg.MaxTokenSize {
		return nil, errTooLarge
	}
	var c tokenClaims
	var iss *issuerKeys
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// Route by the (still unverified) iss to that issuer's keys only:
		// a token naming issuer A is never checked against B's keys.
		iss = v.issuers[canonicalIssuer(c.Iss)]
		if iss == nil {
			return nil, errUnknownIssuer
		}
		key, thumb, err := iss.key(ctx, t)
		c.key = thumb
		return key, err
	})
	if err != nil {
		return nil, classify(err)
	}
	// Verified: check what the parser does not know about.
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
	// The claims segment, which the parser has decoded and checked
	// already: Claims decodes it again on first use only.
	_, rest, _ := strings.Cut(token, ".")
	segment, _, _ := strings.Cut(rest, ".")
	id := c.identity(ic.URL, segment)
	if ic.MetadataClaim != "" {
		var all map[string]json.RawMessage
		if err := id.Claims(&all); err != nil {
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
		v.cache.put(token, id, now)
		// A refresh that removed the key while this token was being
		// verified has swept the cache already: do not keep it.
		if ks := iss.keys.Load(); iss.static == nil && ks != nil && !ks.hasThumb(id.key) {
			v.cache.remove(token)
		}
	}
	return id, nil
}

// classify maps a golang-jwt error to this package's errors, keeping the
// cause wrapped.
func classify(err error) error {
	var reason error
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		return ErrKeysUnavailable
	case errors.Is(err, errUnknownIssuer):
		return errUnknownIssuer
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = errExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		reason = errNotYetValid
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		reason = errBadSignature
	default: // malformed, bad JSON, missing required claims
		reason = errMalformed
	}
	return fmt.Errorf("%w: %w", reason, err)
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
