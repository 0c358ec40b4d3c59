package jwtverify_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/usersynctest"
)

// newVerifier returns a verifier trusting the given issuers, with
// overrides applied to its config.
func newVerifier(t testing.TB, override func(*jwtverify.Config), issuers ...*usersynctest.Issuer) *jwtverify.Verifier {
	t.Helper()
	cfg := jwtverify.Config{Logger: slog.New(slog.DiscardHandler)}
	for _, i := range issuers {
		cfg.Issuers = append(cfg.Issuers, jwtverify.Issuer{URL: i.URL})
	}
	if override != nil {
		override(&cfg)
	}
	v, err := jwtverify.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerifyAttackMatrix(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	b := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.Issuers[0].Audiences = []string{"app"}
		c.Issuers[0].AuthorizedParties = []string{"https://app.example.com"}
		c.CacheSize = -1
		c.MapIdentity = func(id *usersync.Identity) error {
			var c struct{ Reject bool }
			if err := json.Unmarshal(id.Claims, &c); err != nil || c.Reject {
				return errors.New("rejected")
			}
			return nil
		}
	}, a)
	now := time.Now()
	valid := map[string]any{"aud": "app"}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{"aud": "app"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	good := a.Token(valid)
	parts := strings.Split(good, ".")

	// HS256 signed with the RSA public key's bytes: the classic
	// algorithm-confusion attack.
	resp, err := http.Get(a.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": a.URL, "sub": "u", "aud": "app", "exp": now.Add(time.Minute).Unix(), "iat": now.Unix()})
	hs.Header["kid"] = strings.Split(strings.Split(good, ".")[0], ".")[0]
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustMarshalPKIX(t)})
	hsToken, _ := hs.SignedString(pubPEM)

	noneToken := b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."
	unpublished := usersynctest.NewIssuer(t) // signs with keys A never published

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid RS256", good, nil},
		{"valid ES256", a.TokenAlg("ES256", valid), nil},
		{"valid EdDSA", a.TokenAlg("EdDSA", valid), nil},
		{"alg none", noneToken, jwtverify.ErrBadSignature},
		{"HS256 signed with the RSA public key", hsToken, jwtverify.ErrBadSignature},
		{"expired", a.Token(with(map[string]any{"exp": now.Add(-time.Minute).Unix()})), usersync.ErrTokenExpired},
		{"expired within leeway passes", a.Token(with(map[string]any{"exp": now.Add(-2 * time.Second).Unix()})), nil},
		{"no exp", a.Token(with(map[string]any{"exp": nil})), jwtverify.ErrMalformedToken},
		{"nbf in the future", a.Token(with(map[string]any{"nbf": now.Add(time.Minute).Unix()})), jwtverify.ErrTokenNotYetValid},
		{"iat in the future beyond leeway", a.Token(with(map[string]any{"iat": now.Add(time.Minute).Unix()})), jwtverify.ErrTokenNotYetValid},
		{"iat in the future within leeway passes", a.Token(with(map[string]any{"iat": now.Add(2 * time.Second).Unix()})), nil},
		{"wrong iss", a.Token(with(map[string]any{"iss": "https://evil.example.com"})), jwtverify.ErrUnknownIssuer},
		{"iss with a trailing slash is the same issuer", a.Token(with(map[string]any{"iss": a.URL + "/"})), nil},
		{"iss of A signed with B's key", b.Token(with(map[string]any{"iss": a.URL})), jwtverify.ErrBadSignature},
		{"wrong aud", a.Token(with(map[string]any{"aud": "other"})), jwtverify.ErrWrongAudience},
		{"no aud", a.Token(map[string]any{}), jwtverify.ErrWrongAudience},
		{"aud list with ours", a.Token(with(map[string]any{"aud": []string{"x", "app"}})), nil},
		{"wrong azp", a.Token(with(map[string]any{"azp": "https://evil.example.com"})), jwtverify.ErrWrongAuthorizedParty},
		{"right azp", a.Token(with(map[string]any{"azp": "https://app.example.com"})), nil},
		{"unknown kid", unpublished.Token(with(map[string]any{"iss": a.URL})), jwtverify.ErrBadSignature},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(a.Token(with(map[string]any{"sub": "x"})), ".")[2], jwtverify.ErrBadSignature},
		{"malformed base64", parts[0] + ".!!!." + parts[2], jwtverify.ErrMalformedToken},
		{"malformed JSON", parts[0] + "." + b64(`{"sub":`) + "." + parts[2], jwtverify.ErrMalformedToken},
		{"claims of the wrong type", a.Token(with(map[string]any{"name": 42})), jwtverify.ErrMalformedToken},
		{"only dots", strings.Repeat(".", 5000), jwtverify.ErrMalformedToken},
		{"two parts", parts[0] + "." + parts[1], jwtverify.ErrMalformedToken},
		{"1 MB token", strings.Repeat("a", 1<<20), jwtverify.ErrTokenTooLarge},
		{"missing sub", a.Token(with(map[string]any{"sub": nil})), jwtverify.ErrMalformedToken},
		{"iat far before the epoch (would overflow a version)", a.Token(with(map[string]any{"iat": -1e16})), jwtverify.ErrMalformedToken},
		{"nbf before the epoch", a.Token(with(map[string]any{"nbf": -5})), jwtverify.ErrMalformedToken},
		{"exp beyond the year 9999", a.Token(with(map[string]any{"exp": 1e12})), jwtverify.ErrMalformedToken},
		{"empty", "", usersync.ErrNoToken},
		{"MapIdentity fails", a.Token(with(map[string]any{"reject": true})), jwtverify.ErrClaimsNotAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if id.Issuer != a.URL || id.TokenIdentifier != a.URL+"|"+id.Subject {
					t.Fatalf("identity %+v", id)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want != usersync.ErrNoToken && !errors.Is(err, usersync.ErrInvalidToken) {
				t.Fatalf("err = %v does not wrap ErrInvalidToken", err)
			}
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token[len(tt.token)-20:]) {
				t.Fatalf("error text contains the token: %v", err)
			}
		})
	}
}

func mustMarshalPKIX(t *testing.T) []byte {
	t.Helper()
	// Any RSA public key will do: HS256 must be refused before a key is
	// even looked up.
	k, err := rsa.GenerateKey(strings.NewReader(strings.Repeat("x", 4096)), 1024)
	if err != nil {
		return []byte("public key bytes")
	}
	b, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return b
}

func TestVerifyUnknownIssuerMakesNoNetworkCall(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, nil, a)
	before := a.Fetches()
	other := usersynctest.NewIssuer(t)
	if _, err := v.Verify(context.Background(), other.Token(nil)); !errors.Is(err, jwtverify.ErrUnknownIssuer) {
		t.Fatalf("err = %v", err)
	}
	if a.Fetches() != before || other.Fetches() != 0 {
		t.Fatalf("JWKS fetched for an unknown issuer: a %d→%d, other %d", before, a.Fetches(), other.Fetches())
	}
}

func TestVerifyIdentityClaims(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, nil, a)
	tok := a.Token(map[string]any{
		"sub": "user_2abc", "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace",
		"email": "ada@example.com", "email_verified": "true", "phone_number": "+15550100", "phone_number_verified": true,
		"picture": "https://img.example.com/ada", "preferred_username": "ada", "locale": "en-GB",
		"address": map[string]any{"country": "UK"}, "updated_at": 1700000000, "sid": "sess_123", "azp": "https://app.example.com",
	})
	id, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "user_2abc" || id.Name != "Ada Lovelace" || id.GivenName != "Ada" || id.FamilyName != "Lovelace" || id.EmailVerified == nil || !*id.EmailVerified ||
		id.PictureURL != "https://img.example.com/ada" || id.PreferredUsername != "ada" || id.PhoneNumber != "+15550100" ||
		id.AuthorizedParty != "https://app.example.com" || id.IssuedAt.IsZero() || id.Expiry.IsZero() || id.Metadata != nil {
		t.Fatalf("identity %+v", id)
	}
	// Every other claim, standard or custom, through Claims.
	var custom struct {
		Sid     string `json:"sid"`
		Locale  string `json:"locale"`
		Address struct {
			Country string `json:"country"`
		} `json:"address"`
	}
	if err := json.Unmarshal(id.Claims, &custom); err != nil || custom.Sid != "sess_123" || custom.Locale != "en-GB" || custom.Address.Country != "UK" {
		t.Fatalf("Claims: %+v, %v", custom, err)
	}
}

// MapIdentity fills fields from claims of other names and attaches app
// data, once per token: a cached verification reuses its result.
func TestVerifyMapIdentityRunsOncePerToken(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	type orgClaims struct {
		Org struct {
			ID   string `json:"id"`
			Role string `json:"rol"`
		} `json:"o"`
	}
	var calls atomic.Int32
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.MapIdentity = func(id *usersync.Identity) error {
			calls.Add(1)
			var c struct {
				Email string `json:"https://example.com/email"`
				orgClaims
			}
			if err := json.Unmarshal(id.Claims, &c); err != nil {
				return err
			}
			id.Email = c.Email
			id.Data = &c.orgClaims
			return nil
		}
	}, a)
	tok := a.Token(map[string]any{"https://example.com/email": "ada@example.com", "o": map[string]any{"id": "org_1", "rol": "admin"}})
	for range 3 {
		id, err := v.Verify(context.Background(), tok)
		if err != nil || id.Email != "ada@example.com" {
			t.Fatalf("Verify = %+v, %v", id, err)
		}
		if org, ok := id.Data.(*orgClaims); !ok || org.Org.ID != "org_1" || org.Org.Role != "admin" {
			t.Fatalf("Data = %#v", id.Data)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("MapIdentity ran %d times for one token, want 1", n)
	}
}

// A claim named by MetadataClaim becomes the identity's metadata.
func TestVerifyMetadataClaim(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.Issuers[0].MetadataClaim = "metadata" }, a)
	id, err := v.Verify(context.Background(), a.Token(map[string]any{"metadata": map[string]any{"plan": "pro"}}))
	if err != nil || string(id.Metadata) != `{"plan":"pro"}` {
		t.Fatalf("Verify = %s, %v", id.Metadata, err)
	}
	id, err = v.Verify(context.Background(), a.Token(map[string]any{"sub": "other"}))
	if err != nil || id.Metadata != nil {
		t.Fatalf("without the claim: %s, %v", id.Metadata, err)
	}
}

// A static PEM key verifies with no network call at all, whatever the
// token's kid.
func TestVerifyWithPublicKeyPEM(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.Issuers[0].PublicKeyPEM = a.PublicKeyPEM()
		c.Issuers[0].JWKSURL = "http://127.0.0.1:1/unreachable"
	}, a)
	if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
		t.Fatalf("RS256 token: %v", err)
	}
	if _, err := v.Verify(context.Background(), a.TokenAlg("ES256", nil)); !errors.Is(err, jwtverify.ErrBadSignature) {
		t.Fatalf("token of another key: err = %v, want ErrBadSignature", err)
	}
	other := usersynctest.NewIssuer(t)
	if _, err := v.Verify(context.Background(), other.Token(map[string]any{"iss": a.URL})); !errors.Is(err, jwtverify.ErrBadSignature) {
		t.Fatalf("token signed by another issuer's RS256 key: err = %v, want ErrBadSignature", err)
	}
	if a.Fetches() != 0 {
		t.Fatalf("the JWKS was fetched %d times", a.Fetches())
	}
	if _, err := jwtverify.New(context.Background(), jwtverify.Config{Issuers: []jwtverify.Issuer{{URL: a.URL, PublicKeyPEM: "not PEM"}}}); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("bad PEM: err = %v, want ErrInvalid", err)
	}
}

// A configured issuer with a trailing slash and tokens without one (and
// the other way round) are one issuer, and give one token identifier.
func TestVerifyIssuerTrailingSlash(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v, err := jwtverify.New(context.Background(), jwtverify.Config{Issuers: []jwtverify.Issuer{{URL: a.URL + "/", JWKSURL: a.JWKSURL()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, iss := range []string{a.URL, a.URL + "/"} {
		id, err := v.Verify(context.Background(), a.Token(map[string]any{"iss": iss, "sub": "user_1"}))
		if err != nil {
			t.Fatalf("iss %q: %v", iss, err)
		}
		if id.Issuer != a.URL || id.TokenIdentifier != usersync.TokenIdentifier(a.URL, "user_1") || id.TokenIdentifier != a.URL+"|user_1" {
			t.Fatalf("iss %q: identity %q %q", iss, id.Issuer, id.TokenIdentifier)
		}
	}
}

func TestVerifyKeyRotationWithoutRestart(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.CacheSize = -1 }, a)
	if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
		t.Fatal(err)
	}
	a.Rotate()
	if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
		t.Fatalf("token with the rotated key: %v", err)
	}
}

func TestVerifyKeepsKeysThroughJWKSOutage(t *testing.T) {
	for _, mode := range []usersynctest.JWKSMode{usersynctest.JWKS500, usersynctest.JWKSGarbage, usersynctest.JWKSEmpty} {
		a := usersynctest.NewIssuer(t)
		v := newVerifier(t, func(c *jwtverify.Config) {
			c.CacheSize = -1
			c.RefreshInterval = 20 * time.Millisecond
		}, a)
		a.SetJWKSMode(mode)
		// Three background refreshes that got the broken answer.
		waitFetches(t, a, a.Fetches()+3)
		if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
			t.Fatalf("mode %d: a known key stopped verifying during the outage: %v", mode, err)
		}
	}
}

// A storm of tokens with made-up kids costs one JWKS fetch. The tokens
// that come while it is under way join it and give up after
// UnknownKeyWait: the fetch is held until all of them have returned, so
// they can only have returned by giving up (503: the kid may be a
// rotation). Those that come after it has ended find that a fetch for an
// unknown kid ran less than UnknownKeyRefresh ago (401). No wall-clock
// bound: the durations are only logged.
func TestVerifyUnknownKidStormIsRateLimited(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	gate := newGateTransport(t)
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.CacheSize = -1
		c.UnknownKeyWait = 300 * time.Millisecond
		c.UnknownKeyRefresh = time.Hour
		c.HTTPClient = &http.Client{Transport: gate, Timeout: time.Minute}
	}, a)
	stranger := usersynctest.NewIssuer(t)
	tok := stranger.Token(map[string]any{"iss": a.URL})
	before, _ := gate.counts()
	storm := func(want error) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var slowest time.Duration
		for range 200 {
			wg.Go(func() {
				start := time.Now()
				_, err := v.Verify(context.Background(), tok)
				d := time.Since(start)
				mu.Lock()
				slowest = max(slowest, d)
				mu.Unlock()
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			})
		}
		wg.Wait()
		t.Logf("the slowest of 200 requests took %v", slowest)
	}

	gate.shut()
	storm(usersync.ErrKeysUnavailable)
	gate.open()
	// Until the fetch has ended, a request joins it; once it has, the kid
	// is known to be unknown. The deadline only ends a hung test.
	for deadline := time.Now().Add(time.Minute); ; {
		_, err := v.Verify(context.Background(), tok)
		if errors.Is(err, jwtverify.ErrBadSignature) {
			break
		}
		if !errors.Is(err, usersync.ErrKeysUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the fetch was let through: err = %v", err)
		}
	}
	storm(jwtverify.ErrBadSignature)

	if n, _ := gate.counts(); n-before != 1 {
		t.Fatalf("the storms of unknown-kid tokens made %d JWKS requests, want 1", n-before)
	}
}

func TestVerifyCacheEntriesExpireWithTheToken(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
		c.Leeway = time.Nanosecond
	}, a)
	tok := a.Token(map[string]any{"exp": now.Add(10 * time.Second).Unix()})
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(context.Background(), tok)
	if err != nil || second != first {
		t.Fatalf("second Verify did not hit the cache: %p vs %p, %v", second, first, err)
	}
	clock.Store(now.Add(11 * time.Second).UnixNano())
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, usersync.ErrTokenExpired) {
		t.Fatalf("after exp: err = %v, want ErrTokenExpired", err)
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]jwtverify.Config{
		"no issuers":                               {},
		"empty issuer":                             {Issuers: []jwtverify.Issuer{{}}},
		"HS256 allowed":                            {Issuers: []jwtverify.Issuer{{URL: "https://a"}}, Algorithms: []string{"HS256"}},
		"none allowed":                             {Issuers: []jwtverify.Issuer{{URL: "https://a"}}, Algorithms: []string{"none"}},
		"duplicate issuer":                         {Issuers: []jwtverify.Issuer{{URL: "https://a", JWKSURL: "http://127.0.0.1:1/x"}, {URL: "https://a/"}}},
		"JWKS URL not http":                        {Issuers: []jwtverify.Issuer{{URL: "https://a", JWKSURL: "file:///etc/passwd"}}},
		"plain-http JWKS URL to a remote host":     {Issuers: []jwtverify.Issuer{{URL: "https://a", JWKSURL: "http://keys.example.com/jwks.json"}}},
		"plain-http issuer of a remote host":       {Issuers: []jwtverify.Issuer{{URL: "http://issuer.example.com"}}},
		"plain-http JWKS URL to a look-alike host": {Issuers: []jwtverify.Issuer{{URL: "https://a", JWKSURL: "http://localhost.example.com/jwks.json"}}},
		"plain-http JWKS URL to a private address": {Issuers: []jwtverify.Issuer{{URL: "https://a", JWKSURL: "http://10.0.0.1/jwks.json"}}},
	} {
		if _, err := jwtverify.New(context.Background(), cfg); !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// Plain http is for this machine only; https anywhere.
func TestNewVerifierAcceptsHTTPOnLoopbackOnly(t *testing.T) {
	for _, jwks := range []string{"https://keys.example.com/jwks.json", "http://127.0.0.1:1/jwks.json", "http://localhost:1/jwks.json", "http://[::1]:1/jwks.json"} {
		v, err := jwtverify.New(context.Background(), jwtverify.Config{
			Issuers: []jwtverify.Issuer{{URL: "https://a", JWKSURL: jwks}}, StartupWait: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			HTTPClient: &http.Client{Transport: refuseTransport{}},
		})
		if err != nil {
			t.Errorf("%s: %v", jwks, err)
			continue
		}
		v.Close()
	}
}

// refuseTransport fails every request, making no network call.
type refuseTransport struct{}

func (refuseTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in this test")
}

func TestVerifyErrorsDoNotEchoTheToken(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.CacheSize = -1; c.UnknownKeyWait = 50 * time.Millisecond }, a)
	parts := strings.Split(a.Token(nil), ".")
	marker := strings.Repeat("Q", 200)
	for name, tok := range map[string]string{
		"sender-chosen kid": b64(`{"alg":"RS256","kid":"`+marker+`"}`) + "." + parts[1] + "." + parts[2],
		"sender-chosen alg": b64(`{"alg":"`+marker+`"}`) + "." + parts[1] + "." + parts[2],
		"claims garbage":    parts[0] + "." + b64(`{"sub":"`+marker+`",`) + "." + parts[2],
	} {
		_, err := v.Verify(context.Background(), tok)
		if err == nil || strings.Contains(err.Error(), "QQQQ") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// With two trusted issuers, a token claiming issuer A but signed with B's
// key fails: each issuer has its own key set, never a pooled one.
func TestVerifyKeySetsAreNotPooled(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	b := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.CacheSize = -1 }, a, b)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		if _, err := v.Verify(context.Background(), a.TokenAlg(alg, nil)); err != nil {
			t.Fatalf("A's own %s token: %v", alg, err)
		}
		if _, err := v.Verify(context.Background(), b.TokenAlg(alg, nil)); err != nil {
			t.Fatalf("B's own %s token: %v", alg, err)
		}
		if _, err := v.Verify(context.Background(), b.TokenAlg(alg, map[string]any{"iss": a.URL})); !errors.Is(err, jwtverify.ErrBadSignature) {
			t.Fatalf("iss A signed by B (%s): err = %v, want ErrBadSignature", alg, err)
		}
	}
}

// Close waits for every JWKS request the verifier made: here a background
// refresh that the JWKS holds until Close cancels it, and that then takes
// a while to return. Once Close has returned, no request is under way and
// none is made.
func TestVerifierCloseStopsBackgroundRefresh(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	gate := newGateTransport(t)
	gate.linger = 50 * time.Millisecond
	clock := newFakeClock()
	v, err := jwtverify.New(context.Background(), jwtverify.Config{
		Issuers: []jwtverify.Issuer{{URL: a.URL}}, RefreshInterval: 10 * time.Millisecond, Now: clock.Now,
		HTTPClient: &http.Client{Transport: gate, Timeout: time.Minute}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFetches(t, a, 3) // the background refreshes run
	gate.shut()
	gate.waitHeld(t)
	checkClose(t, v, gate, clock, a.URL)
	// Verify keeps working with the keys it has.
	if _, err := v.Verify(context.Background(), a.Token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})); err != nil {
		t.Fatalf("Verify after Close: %v", err)
	}
}

// Close waits for the fetch of a token's unknown kid too, which goes on
// after the request that started it has given up.
func TestVerifierCloseWaitsForUnknownKidFetch(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	gate := newGateTransport(t)
	gate.linger = 50 * time.Millisecond
	clock := newFakeClock()
	v, err := jwtverify.New(context.Background(), jwtverify.Config{
		Issuers: []jwtverify.Issuer{{URL: a.URL}}, UnknownKeyWait: time.Millisecond, Now: clock.Now,
		HTTPClient: &http.Client{Transport: gate, Timeout: time.Minute}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	gate.shut()
	a.Rotate()
	if _, err := v.Verify(context.Background(), a.Token(nil)); !errors.Is(err, usersync.ErrKeysUnavailable) {
		t.Fatalf("a new kid while the JWKS hangs: err = %v, want ErrKeysUnavailable", err)
	}
	gate.waitHeld(t)
	checkClose(t, v, gate, clock, a.URL)
}

// checkClose closes v, a verifier of issuer iss on clock, and checks that
// no JWKS request of it is under way once Close has returned, and that
// none is made after: not for a token with an unknown kid that a fetch is
// due for, not by a refresh loop still running.
func checkClose(t *testing.T, v *jwtverify.Verifier, gate *gateTransport, clock *fakeClock, iss string) {
	t.Helper()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	started, inFlight := gate.counts()
	if inFlight != 0 {
		t.Fatalf("Close returned with %d JWKS requests under way", inFlight)
	}
	// Past UnknownKeyRefresh and any backoff: a fetch for an unknown kid
	// would be due, were the verifier open.
	clock.Add(2 * time.Minute)
	stranger := usersynctest.NewIssuer(t)
	if _, err := v.Verify(context.Background(), stranger.Token(map[string]any{"iss": iss})); !errors.Is(err, usersync.ErrKeysUnavailable) {
		t.Fatalf("an unknown kid after Close: err = %v, want ErrKeysUnavailable", err)
	}
	// Not synchronisation: a chance, ten refresh intervals long, for a
	// goroutine that wrongly outlived Close to make a request.
	time.Sleep(100 * time.Millisecond)
	if n, _ := gate.counts(); n != started {
		t.Fatalf("%d JWKS requests after Close returned", n-started)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

// fakeClock is a verifier's clock that a test moves on.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// redirectTransport plays the network: an https JWKS URL redirects to
// where; any other URL is served the JWKS of keys.
type redirectTransport struct {
	where, keys string
	mu          sync.Mutex
	seen        []string
}

func (rt *redirectTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.seen = append(rt.seen, r.URL.String())
	rt.mu.Unlock()
	if r.URL.Host == "issuer.example" {
		return &http.Response{StatusCode: http.StatusFound, Header: http.Header{"Location": {rt.where}}, Body: http.NoBody, Request: r}, nil
	}
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, rt.keys, nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if resp != nil {
		resp.Request = r
	}
	return resp, err
}

// A JWKS URL that redirects is followed only to where keys may come from:
// https, or plain http on loopback; a redirect to plain http on a remote
// host fetches nothing.
func TestVerifyJWKSRedirectsOnlyToSafeURLs(t *testing.T) {
	for _, tc := range []struct {
		where string
		ok    bool
	}{
		{"http://keys.attacker.example/jwks.json", false},
		{"https://keys.example/jwks.json", true},
	} {
		t.Run(tc.where, func(t *testing.T) {
			keys := usersynctest.NewIssuer(t) // what the redirect target serves
			rt := &redirectTransport{where: tc.where, keys: keys.JWKSURL()}
			v, err := jwtverify.New(context.Background(), jwtverify.Config{
				Issuers:    []jwtverify.Issuer{{URL: "https://issuer.example"}},
				HTTPClient: &http.Client{Transport: rt},
				Logger:     slog.New(slog.DiscardHandler), StartupWait: time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			_, err = v.Verify(context.Background(), keys.Token(map[string]any{"iss": "https://issuer.example"}))
			if (err == nil) != tc.ok {
				t.Fatalf("a token of the keys behind the redirect: %v (requests %v)", err, rt.seen)
			}
			rt.mu.Lock()
			defer rt.mu.Unlock()
			for _, u := range rt.seen {
				if !tc.ok && strings.HasPrefix(u, "http://") {
					t.Fatalf("fetched %s", u)
				}
			}
		})
	}
}
