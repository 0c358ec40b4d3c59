package usersync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// issuerKeys is one issuer's configuration and key set.
type issuerKeys struct {
	cfg  IssuerConfig
	keys keyfunc.Keyfunc
}

// newIssuerKeys fetches the issuer's JWKS (once, now) and keeps it fresh
// in the background until ctx ends.
func newIssuerKeys(ctx context.Context, ic IssuerConfig, cfg *VerifierConfig) (*issuerKeys, error) {
	client := *cfg.HTTPClient
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	client.Transport = cappedTransport{base: base, max: cfg.MaxJWKSSize}
	log := cfg.Logger.With("issuer", ic.Issuer)

	storage, err := jwkset.NewStorageFromHTTP(ic.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    &client,
		Ctx:                       ctx,
		HTTPTimeout:               client.Timeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshInterval:           cfg.RefreshInterval,
		Storage:                   &lastGoodStorage{jwkset.NewMemoryStorage()},
		RefreshErrorHandler: func(ctx context.Context, err error) {
			log.WarnContext(ctx, "usersync: JWKS refresh failed; keeping the last good keys", "error", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: JWKS URL of %q: %w", ErrInvalid, ic.Issuer, err)
	}
	client2, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{ic.JWKSURL: storage},
		RateLimitWaitMax:  cfg.UnknownKeyWait,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cfg.UnknownKeyRefresh), 1),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: JWKS of %q: %w", ErrInvalid, ic.Issuer, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: client2})
	if err != nil {
		return nil, fmt.Errorf("%w: JWKS of %q: %w", ErrInvalid, ic.Issuer, err)
	}
	return &issuerKeys{cfg: ic, keys: kf}, nil
}

// keyfunc returns the key that verifies t. A kid this issuer does not know
// triggers a rate-limited refresh that waits at most UnknownKeyWait.
func (k *issuerKeys) keyfunc(ctx context.Context, t *jwt.Token) (any, error) {
	key, err := k.keys.KeyfuncCtx(ctx)(t)
	if err != nil {
		// keyfunc's error quotes the token's kid, which the sender
		// chose: keep it out of error texts and logs.
		return nil, errNoKey
	}
	return key, nil
}

var errNoKey = errors.New("usersync: no key of the issuer matches the token's kid and alg")

// lastGoodStorage refuses to replace a key set with an empty one, so that an
// endpoint answering {"keys":[]} by mistake does not lock every user out.
// (Undecodable answers never reach it: jwkset keeps the old keys then.)
type lastGoodStorage struct {
	*jwkset.MemoryJWKSet
}

var errEmptyKeySet = errors.New("usersync: JWKS has no usable keys")

func (s *lastGoodStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if len(given) == 0 {
		return errEmptyKeySet
	}
	return s.MemoryJWKSet.KeyReplaceAll(ctx, given)
}

// cappedTransport caps response bodies: reading past max fails.
type cappedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: t.max}
	return resp, nil
}

var errBodyTooLarge = errors.New("usersync: JWKS response too large")

type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
