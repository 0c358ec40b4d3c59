package jwtverify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/pubkey"
)

// issuerKeys is one issuer's configuration and signing keys: a JWKS kept
// fresh from its URL, or one static PEM key.
type issuerKeys struct {
	cfg         Issuer
	static      any    // the PEM key; nil for a JWKS
	staticThumb string // its thumbprint

	// What the fetches share.
	client  *http.Client
	maxSize int64
	log     *slog.Logger
	now     func() time.Time
	// refresh is the interval of background refreshes; unknownKey the least
	// time between two fetches triggered by unknown kids; wait the longest
	// a request waits for a fetch.
	refresh, unknownKey, wait time.Duration
	// removed is told the thumbprints of the keys a fetch removed.
	removed func(issuer string, thumbprints []string)
	// base ends with the verifier: fetches are bound to it.
	base context.Context
	// tasks runs the fetch goroutines, for the verifier's Close to wait for.
	tasks *tasks
	tel   *verifierTelemetry

	keys atomic.Pointer[keySet] // nil until a fetch succeeds

	mu       sync.Mutex
	fetching chan struct{} // closed when the running fetch ends; nil if none
	lastOK   time.Time     // end of the last successful fetch
	lastKid  time.Time     // start of the last fetch for an unknown kid
	lastErr  error         // error of the last fetch, nil after a success
	failures int           // failed fetches in a row
	nextTry  time.Time     // earliest fetch after a failure
}

// keySet is one fetched JWKS.
type keySet struct {
	kf     keyfunc.Keyfunc
	kids   map[string]struct{}
	keys   []publicKey         // every usable key, with its thumbprint
	thumbs map[string]struct{} // the thumbprints of keys
}

// publicKey is a verification key and its thumbprint: what ties a cached
// token to the key that verified it, whatever kid named the key.
type publicKey struct {
	key   crypto.PublicKey
	thumb string
}

// thumbprint returns the SHA-256 of key's PKIX form, or "" for a key that
// has none (no key the parsers return).
func thumbprint(key crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return string(sum[:])
}

// thumbOf returns the thumbprint of key, one of the set's: found by
// pointer first (keyfunc hands out the set's own keys; the Equal methods
// of RSA and ECDSA keys allocate), then by value.
func (ks *keySet) thumbOf(key any) string {
	for _, k := range ks.keys {
		if samePointer(key, k.key) {
			return k.thumb
		}
	}
	for _, k := range ks.keys {
		if pubkey.Equal(key, k.key) {
			return k.thumb
		}
	}
	return thumbprint(key)
}

// samePointer reports whether a and b are the same RSA or ECDSA key
// object.
func samePointer(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *rsa.PublicKey:
		b, ok := b.(*rsa.PublicKey)
		return ok && a == b
	case *ecdsa.PublicKey:
		b, ok := b.(*ecdsa.PublicKey)
		return ok && a == b
	}
	return false
}

// Backoff of failed fetches: 250ms, doubling, at most maxBackoff, so that
// requests succeed within a few seconds of the keys becoming reachable.
const maxBackoff = 4 * time.Second

func (k *issuerKeys) backoff() time.Duration {
	d := 250 * time.Millisecond << min(k.failures, 5)
	return min(d, maxBackoff)
}

// key returns the key that verifies t and its thumbprint, or an error:
// errNoKey when no key of the issuer matches, usersync.ErrKeysUnavailable when the
// keys cannot be had to check. For a token without a kid it returns the
// key whose signature checks, so that the cache knows which key the token
// depends on.
func (k *issuerKeys) key(ctx context.Context, t *jwt.Token) (any, string, error) {
	if k.static != nil {
		return k.static, k.staticThumb, nil
	}
	kid, _ := t.Header["kid"].(string)
	ks := k.keys.Load()
	if ks == nil || !ks.has(kid) {
		if err := k.refreshFor(ctx, kid); err != nil {
			return nil, "", err
		}
		ks = k.keys.Load()
	}
	// keyfunc's error quotes the token's kid, which the sender chose: keep
	// it out of error texts and logs.
	key, err := ks.kf.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil, "", errNoKey
	}
	if set, ok := key.(jwt.VerificationKeySet); ok {
		// No kid: the key whose signature checks, if any.
		signed := t.Raw[:max(strings.LastIndexByte(t.Raw, '.'), 0)]
		for _, key := range set.Keys {
			if t.Method.Verify(signed, t.Signature, key) == nil {
				return key, ks.thumbOf(key), nil
			}
		}
		return nil, "", errNoKey
	}
	return key, ks.thumbOf(key), nil
}

var errNoKey = errors.New("no key of the issuer matches the token's kid and alg")

func (ks *keySet) has(kid string) bool {
	if kid == "" {
		return true // keyfunc tries every key
	}
	_, ok := ks.kids[kid]
	return ok
}

// hasThumb reports whether the set holds the key of a thumbprint.
func (ks *keySet) hasThumb(thumb string) bool {
	_, ok := ks.thumbs[thumb]
	return ok
}

// refreshFor fetches the keys for a token whose kid is not known (or for
// any token, none being known), or joins a fetch under way. It returns nil
// once the kid is known, errNoKey when a fetch found no such kid (or one
// for an unknown kid ran less than UnknownKeyRefresh ago), and
// usersync.ErrKeysUnavailable when the keys cannot be had to check: the fetches
// fail, or the one under way did not end within UnknownKeyWait. While
// fetches fail, they are retried with backoff.
func (k *issuerKeys) refreshFor(ctx context.Context, kid string) error {
	unavailable := fmt.Errorf("%w: %s", usersync.ErrKeysUnavailable, k.cfg.URL)
	now := k.now()
	k.mu.Lock()
	failing := k.lastErr != nil || k.keys.Load() == nil
	var due bool
	if failing {
		due = !now.Before(k.nextTry)
	} else if due = k.lastKid.IsZero() || now.Sub(k.lastKid) >= k.unknownKey; due {
		k.lastKid = now
	}
	joining := k.fetching != nil
	var done chan struct{}
	if due || joining {
		// Under the lock of the decision: a request joins the very fetch
		// it saw under way (never one started after that ended, past the
		// rate limit), and a request that this one's lastKid makes not
		// due finds this one's fetch under way, and joins it.
		done = k.startFetch()
	}
	k.mu.Unlock()
	switch {
	case !due && !joining && failing:
		return unavailable // backing off: the kid may be a rotation the outage hides
	case !due && !joining:
		return errNoKey
	}
	finished := k.await(ctx, done, k.wait)
	if ks := k.keys.Load(); ks != nil && ks.has(kid) {
		return nil
	}
	if !finished {
		return unavailable
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lastErr != nil {
		return unavailable
	}
	return errNoKey
}

// fetch fetches the JWKS, or joins a fetch under way, and waits at most
// wait for it (0: until it ends). It reports whether the fetch ended. The
// fetch itself is bound to the verifier, not to ctx, so one impatient
// request does not fail it for everyone.
func (k *issuerKeys) fetch(ctx context.Context, wait time.Duration) bool {
	k.mu.Lock()
	done := k.startFetch()
	k.mu.Unlock()
	return k.await(ctx, done, wait)
}

// startFetch returns the channel that the fetch under way closes when it
// ends, starting a fetch if none is under way; nil once the verifier has
// ended. The caller holds k.mu.
func (k *issuerKeys) startFetch() chan struct{} {
	done := k.fetching
	if done == nil && k.base.Err() != nil {
		return nil // closed
	}
	if done == nil {
		done = make(chan struct{})
		started := k.tasks.goUnlessClosed(func() {
			err := k.fetchOnce()
			k.tel.fetched(k.cfg.URL, err)
			k.mu.Lock()
			defer k.mu.Unlock()
			k.fetching = nil
			close(done)
			now := k.now()
			switch {
			case err == nil:
				if k.lastErr != nil || k.failures > 0 {
					k.log.Info("usersync: JWKS fetched again", "issuer", k.cfg.URL)
				}
				k.lastOK, k.lastErr, k.failures = now, nil, 0
			default:
				if k.failures == 0 && k.base.Err() == nil { // not the verifier ending
					k.log.Warn("usersync: JWKS fetch failed; keeping the last good keys", "issuer", k.cfg.URL, "error", err)
				}
				k.lastErr = err
				k.nextTry = now.Add(k.backoff())
				k.failures++
			}
		})
		if !started {
			return nil // closed
		}
		// The fetch waits for mu, which the caller holds, to record its
		// end: it cannot end before this.
		k.fetching = done
	}
	return done
}

// await waits at most wait (0: no limit) for the fetch that closes done
// to end, and reports whether it did; false for a nil done.
func (k *issuerKeys) await(ctx context.Context, done chan struct{}, wait time.Duration) bool {
	if done == nil {
		return false
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
		return true
	case <-timeout:
	case <-ctx.Done():
	}
	return false
}

// fetchOnce fetches and parses the JWKS and, if it has a usable key,
// replaces the key set with it. An empty or broken answer keeps the old
// keys, so an endpoint answering {"keys":[]} by mistake locks no one out.
func (k *issuerKeys) fetchOnce() error {
	timeout := k.client.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second // a client of the app's without a timeout of its own
	}
	ctx, cancel := context.WithTimeout(k.base, timeout)
	defer cancel()
	parsed, err := pubkey.FetchJWKS(ctx, k.client, k.cfg.JWKSURL, k.maxSize)
	if err != nil {
		return err
	}
	jwks := make([]jwkset.JWK, 0, len(parsed))
	ks := &keySet{kids: make(map[string]struct{}, len(parsed)), thumbs: make(map[string]struct{}, len(parsed))}
	for _, k := range parsed {
		thumb := thumbprint(k.Public)
		if thumb == "" {
			continue
		}
		jwks = append(jwks, k.JWK)
		ks.kids[k.KID] = struct{}{}
		ks.keys = append(ks.keys, publicKey{k.Public, thumb})
		ks.thumbs[thumb] = struct{}{}
	}
	if len(jwks) == 0 {
		return errors.New("JWKS has no usable keys")
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyReplaceAll(ctx, jwks); err != nil {
		return err
	}
	if ks.kf, err = keyfunc.New(keyfunc.Options{Ctx: k.base, Storage: store}); err != nil {
		return err
	}
	old := k.keys.Swap(ks)
	if old != nil && k.removed != nil {
		var gone []string
		for thumb := range old.thumbs {
			if _, ok := ks.thumbs[thumb]; !ok {
				gone = append(gone, thumb)
			}
		}
		if len(gone) > 0 {
			k.removed(k.cfg.URL, gone)
		}
	}
	return nil
}

// run refreshes the keys in the background until ctx ends: every refresh
// interval after a success, with backoff after a failure.
func (k *issuerKeys) run(ctx context.Context) {
	for {
		k.mu.Lock()
		if done := k.fetching; done != nil {
			// The startup fetch, or one of a request, is under way.
			k.mu.Unlock()
			select {
			case <-done:
			case <-ctx.Done():
				return
			}
			continue
		}
		next := k.lastOK.Add(k.refresh)
		if k.lastErr != nil || k.keys.Load() == nil {
			next = k.nextTry
		}
		k.mu.Unlock()
		t := time.NewTimer(max(next.Sub(k.now()), 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		k.fetch(ctx, 0)
	}
}
