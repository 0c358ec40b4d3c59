package usersync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token verification errors. Verify wraps exactly one of them (with the
// underlying cause), so callers and the middleware can tell why a token
// failed with errors.Is. None of their texts ever contains the token.
var (
	ErrNoToken              = errors.New("usersync: no bearer token")
	ErrTokenTooLarge        = errors.New("usersync: token too large")
	ErrMalformedToken       = errors.New("usersync: malformed token")
	ErrUnknownIssuer        = errors.New("usersync: unknown token issuer")
	ErrBadSignature         = errors.New("usersync: bad token signature")
	ErrTokenExpired         = errors.New("usersync: token expired")
	ErrTokenNotYetValid     = errors.New("usersync: token not yet valid")
	ErrWrongAudience        = errors.New("usersync: token audience not accepted")
	ErrWrongAuthorizedParty = errors.New("usersync: token authorized party not accepted")
)

// IssuerConfig describes one trusted token issuer.
type IssuerConfig struct {
	// Issuer is the exact iss of its tokens, such as Clerk's Frontend API
	// URL "https://example.clerk.accounts.dev". Required.
	Issuer string
	// JWKSURL serves the issuer's signing keys. Default: Issuer +
	// "/.well-known/jwks.json".
	JWKSURL string
	// Audiences, if set, are the accepted aud values: a token must name at
	// least one. Clerk session tokens carry no aud; leave it empty for them.
	Audiences []string
	// AuthorizedParties, if set, are the accepted azp values (Clerk: your
	// app's origins, such as "https://app.example.com"). A token without azp
	// is accepted; one with another azp is not.
	AuthorizedParties []string
}

// VerifierConfig configures a Verifier. Only Issuers is required; every
// other field has the default its comment gives.
type VerifierConfig struct {
	// Issuers are the trusted issuers. Each has its own key set: a token is
	// checked only against the keys of the issuer its iss names.
	Issuers []IssuerConfig
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
	// background. Default 1h.
	RefreshInterval time.Duration
	// UnknownKeyRefresh is the least time between two refreshes triggered
	// by a token with an unknown kid (a key rotation). Default 1m.
	UnknownKeyRefresh time.Duration
	// UnknownKeyWait is the longest a request waits for such a refresh.
	// Default 2s.
	UnknownKeyWait time.Duration
	// Map, if set, runs after verification and may fill Identity fields
	// from claims of other names, via Identity.Claims (for providers that
	// put email under a namespaced claim, say). An error rejects the token
	// as ErrMalformedToken.
	Map func(*Identity) error
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs key refresh failures and rejected tokens (reasons only).
	// Default slog.Default().
	Logger *slog.Logger
	// Realm is the realm of WWW-Authenticate challenges. Default "usersync".
	Realm string
	// TokenLookups find a request's token, first match wins. Default:
	// TokenFromHeader, then TokenFromCookie("__session") (Clerk's
	// same-origin session cookie).
	TokenLookups []func(*http.Request) string
}

// Verifier verifies bearer tokens into identities. It is safe for
// concurrent use; Close stops its background key refreshes.
type Verifier struct {
	cfg     VerifierConfig
	issuers map[string]*issuerKeys
	parser  *jwt.Parser
	cache   *tokenCache
	cancel  context.CancelFunc
}

// NewVerifier returns a verifier for cfg. It fetches each issuer's key set
// once (a failure is logged, not fatal: the keys are fetched again when a
// token needs them) and refreshes them in the background until ctx ends or
// Close is called.
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
	setDefault(&cfg.Realm, "usersync")
	cfg.Realm = strings.NewReplacer(`"`, "", `\`, "").Replace(cfg.Realm)
	if cfg.Algorithms == nil {
		cfg.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	}
	for _, a := range cfg.Algorithms {
		if a == "none" || strings.HasPrefix(a, "HS") {
			return nil, fmt.Errorf("%w: algorithm %q cannot be used with a JWKS", ErrInvalid, a)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.TokenLookups == nil {
		cfg.TokenLookups = []func(*http.Request) string{TokenFromHeader, TokenFromCookie("__session")}
	}

	ctx, cancel := context.WithCancel(ctx)
	v := &Verifier{
		cfg:     cfg,
		issuers: make(map[string]*issuerKeys, len(cfg.Issuers)),
		cancel:  cancel,
		parser: jwt.NewParser(
			jwt.WithValidMethods(cfg.Algorithms),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(cfg.Now),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
		),
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	for _, ic := range cfg.Issuers {
		if ic.Issuer == "" {
			cancel()
			return nil, fmt.Errorf("%w: issuer with an empty URL", ErrInvalid)
		}
		if _, dup := v.issuers[ic.Issuer]; dup {
			cancel()
			return nil, fmt.Errorf("%w: issuer %q listed twice", ErrInvalid, ic.Issuer)
		}
		if ic.JWKSURL == "" {
			ic.JWKSURL = strings.TrimSuffix(ic.Issuer, "/") + "/.well-known/jwks.json"
		}
		keys, err := newIssuerKeys(ctx, ic, &cfg)
		if err != nil {
			cancel()
			return nil, err
		}
		v.issuers[ic.Issuer] = keys
	}
	return v, nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Close stops the background key refreshes. Verify keeps working with the
// keys it has.
func (v *Verifier) Close() error {
	v.cancel()
	return nil
}

// Verify checks token and returns its identity. The identity may be shared
// with other callers of the same token (it comes from a cache): treat it as
// read-only. A failure wraps one of the token errors of this package.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > v.cfg.MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTokenTooLarge, len(token), v.cfg.MaxTokenSize)
	}
	now := v.cfg.Now()
	if v.cache != nil {
		if id := v.cache.get(token, now); id != nil {
			return id, nil
		}
	}
	var c tokenClaims
	var iss *issuerKeys
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// Route by the (still unverified) iss to that issuer's keys only:
		// a token naming issuer A is never checked against B's keys.
		iss = v.issuers[c.Iss]
		if iss == nil {
			return nil, ErrUnknownIssuer
		}
		return iss.keyfunc(ctx, t)
	})
	if err != nil {
		return nil, classify(err)
	}
	// Verified: check what the parser does not know about.
	switch {
	case iss == nil || c.Iss != iss.cfg.Issuer:
		return nil, ErrUnknownIssuer
	case c.Sub == "":
		return nil, fmt.Errorf("%w: no sub claim", ErrMalformedToken)
	case len(iss.cfg.Audiences) > 0 && !slices.ContainsFunc(c.Aud, func(a string) bool { return slices.Contains(iss.cfg.Audiences, a) }):
		return nil, ErrWrongAudience
	case len(iss.cfg.AuthorizedParties) > 0 && c.Azp != "" && !slices.Contains(iss.cfg.AuthorizedParties, c.Azp):
		return nil, ErrWrongAuthorizedParty
	}
	_, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	id := c.identity(payload)
	if v.cfg.Map != nil {
		if err := v.cfg.Map(id); err != nil {
			return nil, fmt.Errorf("%w: claim mapping: %w", ErrMalformedToken, err)
		}
	}
	if v.cache != nil {
		v.cache.put(token, id, now)
	}
	return id, nil
}

// classify maps a golang-jwt error to this package's sentinels, keeping the
// cause wrapped.
func classify(err error) error {
	var sentinel error
	switch {
	case errors.Is(err, ErrUnknownIssuer):
		return ErrUnknownIssuer
	case errors.Is(err, jwt.ErrTokenExpired):
		sentinel = ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		sentinel = ErrTokenNotYetValid
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		sentinel = ErrBadSignature
	default: // malformed, bad JSON, missing required claims
		sentinel = ErrMalformedToken
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}
