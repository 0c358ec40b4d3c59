package usersync_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/usersynctest"
)

// newVerifier returns a verifier trusting the given issuers, with
// overrides applied to its config.
func newVerifier(t testing.TB, override func(*usersync.VerifierConfig), issuers ...*usersynctest.Issuer) *usersync.Verifier {
	t.Helper()
	cfg := usersync.VerifierConfig{}
	for _, i := range issuers {
		cfg.Issuers = append(cfg.Issuers, usersync.IssuerConfig{Issuer: i.URL})
	}
	if override != nil {
		override(&cfg)
	}
	v, err := usersync.NewVerifier(context.Background(), cfg)
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
	v := newVerifier(t, func(c *usersync.VerifierConfig) {
		c.Issuers[0].Audiences = []string{"app"}
		c.Issuers[0].AuthorizedParties = []string{"https://app.example.com"}
		c.CacheSize = -1
		c.UnknownKeyWait = 200 * time.Millisecond
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
		{"alg none", noneToken, usersync.ErrBadSignature},
		{"HS256 signed with the RSA public key", hsToken, usersync.ErrBadSignature},
		{"expired", a.Token(with(map[string]any{"exp": now.Add(-time.Minute).Unix()})), usersync.ErrTokenExpired},
		{"expired within leeway passes", a.Token(with(map[string]any{"exp": now.Add(-2 * time.Second).Unix()})), nil},
		{"no exp", a.Token(with(map[string]any{"exp": nil})), usersync.ErrMalformedToken},
		{"nbf in the future", a.Token(with(map[string]any{"nbf": now.Add(time.Minute).Unix()})), usersync.ErrTokenNotYetValid},
		{"iat in the future beyond leeway", a.Token(with(map[string]any{"iat": now.Add(time.Minute).Unix()})), usersync.ErrTokenNotYetValid},
		{"iat in the future within leeway passes", a.Token(with(map[string]any{"iat": now.Add(2 * time.Second).Unix()})), nil},
		{"wrong iss", a.Token(with(map[string]any{"iss": "https://evil.example.com"})), usersync.ErrUnknownIssuer},
		{"iss with a trailing slash", a.Token(with(map[string]any{"iss": a.URL + "/"})), usersync.ErrUnknownIssuer},
		{"iss of A signed with B's key", b.Token(with(map[string]any{"iss": a.URL})), usersync.ErrBadSignature},
		{"wrong aud", a.Token(with(map[string]any{"aud": "other"})), usersync.ErrWrongAudience},
		{"no aud", a.Token(map[string]any{}), usersync.ErrWrongAudience},
		{"aud list with ours", a.Token(with(map[string]any{"aud": []string{"x", "app"}})), nil},
		{"wrong azp", a.Token(with(map[string]any{"azp": "https://evil.example.com"})), usersync.ErrWrongAuthorizedParty},
		{"right azp", a.Token(with(map[string]any{"azp": "https://app.example.com"})), nil},
		{"unknown kid", unpublished.Token(with(map[string]any{"iss": a.URL})), usersync.ErrBadSignature},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(a.Token(with(map[string]any{"sub": "x"})), ".")[2], usersync.ErrBadSignature},
		{"malformed base64", parts[0] + ".!!!." + parts[2], usersync.ErrMalformedToken},
		{"malformed JSON", parts[0] + "." + b64(`{"sub":`) + "." + parts[2], usersync.ErrMalformedToken},
		{"claims of the wrong type", a.Token(with(map[string]any{"name": 42})), usersync.ErrMalformedToken},
		{"only dots", strings.Repeat(".", 5000), usersync.ErrMalformedToken},
		{"two parts", parts[0] + "." + parts[1], usersync.ErrMalformedToken},
		{"1 MB token", strings.Repeat("a", 1<<20), usersync.ErrTokenTooLarge},
		{"missing sub", a.Token(with(map[string]any{"sub": nil})), usersync.ErrMalformedToken},
		{"empty", "", usersync.ErrNoToken},
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
	if _, err := v.Verify(context.Background(), other.Token(nil)); !errors.Is(err, usersync.ErrUnknownIssuer) {
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
	if id.Subject != "user_2abc" || id.Name != "Ada Lovelace" || id.GivenName != "Ada" || !id.EmailVerified || !id.PhoneNumberVerified ||
		id.PictureURL != "https://img.example.com/ada" || id.PreferredUsername != "ada" || id.Locale != "en-GB" ||
		id.Address == nil || id.Address.Country != "UK" || id.UpdatedAt.Unix() != 1700000000 || id.AuthorizedParty != "https://app.example.com" {
		t.Fatalf("identity %+v", id)
	}
	if id.Version() != usersync.VersionOf(id.IssuedAt) || id.Version() == 0 {
		t.Fatalf("Version %d, iat %v", id.Version(), id.IssuedAt)
	}
	var custom struct {
		Sid string `json:"sid"`
	}
	if err := id.Claims(&custom); err != nil || custom.Sid != "sess_123" {
		t.Fatalf("Claims: %+v, %v", custom, err)
	}
}

func TestVerifyMapsCustomClaims(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *usersync.VerifierConfig) {
		c.Map = func(id *usersync.Identity) error {
			var c struct {
				Email string `json:"https://example.com/email"`
			}
			if err := id.Claims(&c); err != nil {
				return err
			}
			id.Email = c.Email
			return nil
		}
	}, a)
	id, err := v.Verify(context.Background(), a.Token(map[string]any{"https://example.com/email": "ada@example.com"}))
	if err != nil || id.Email != "ada@example.com" {
		t.Fatalf("Verify = %+v, %v", id, err)
	}
}

func TestVerifyKeyRotationWithoutRestart(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *usersync.VerifierConfig) { c.CacheSize = -1 }, a)
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
		v := newVerifier(t, func(c *usersync.VerifierConfig) {
			c.CacheSize = -1
			c.RefreshInterval = 20 * time.Millisecond
		}, a)
		a.SetJWKSMode(mode)
		before := a.Fetches()
		deadline := time.Now().Add(5 * time.Second)
		for a.Fetches() < before+3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if a.Fetches() < before+3 {
			t.Fatalf("mode %d: no background refresh happened", mode)
		}
		if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
			t.Fatalf("mode %d: a known key stopped verifying during the outage: %v", mode, err)
		}
	}
}

func TestVerifyUnknownKidStormIsRateLimited(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	const wait = 300 * time.Millisecond
	v := newVerifier(t, func(c *usersync.VerifierConfig) {
		c.CacheSize = -1
		c.UnknownKeyWait = wait
		c.UnknownKeyRefresh = time.Hour
	}, a)
	stranger := usersynctest.NewIssuer(t)
	before := a.Fetches()
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for range 200 {
		wg.Go(func() {
			start := time.Now()
			_, err := v.Verify(context.Background(), stranger.Token(map[string]any{"iss": a.URL}))
			if !errors.Is(err, usersync.ErrBadSignature) {
				t.Errorf("err = %v", err)
			}
			if d := time.Since(start); int64(d) > slowest.Load() {
				slowest.Store(int64(d))
			}
		})
	}
	wg.Wait()
	if n := a.Fetches() - before; n > 1 {
		t.Fatalf("200 unknown-kid tokens made %d JWKS fetches, want at most 1", n)
	}
	if d := time.Duration(slowest.Load()); d > wait+time.Second {
		t.Fatalf("a request waited %v, bound %v", d, wait)
	}
}

func TestVerifyCacheEntriesExpireWithTheToken(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v := newVerifier(t, func(c *usersync.VerifierConfig) {
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
	for name, cfg := range map[string]usersync.VerifierConfig{
		"no issuers":       {},
		"empty issuer":     {Issuers: []usersync.IssuerConfig{{}}},
		"HS256 allowed":    {Issuers: []usersync.IssuerConfig{{Issuer: "https://a"}}, Algorithms: []string{"HS256"}},
		"none allowed":     {Issuers: []usersync.IssuerConfig{{Issuer: "https://a"}}, Algorithms: []string{"none"}},
		"duplicate issuer": {Issuers: []usersync.IssuerConfig{{Issuer: "https://a", JWKSURL: "http://127.0.0.1:1/x"}, {Issuer: "https://a"}}},
	} {
		if _, err := usersync.NewVerifier(context.Background(), cfg); !errors.Is(err, usersync.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestMiddleware(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *usersync.VerifierConfig) { c.Realm = "chat" }, a)
	syncer := usersync.New(memstore.New())
	me := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := syncer.EnsureCurrent(r.Context())
		if errors.Is(err, usersync.ErrNoIdentity) {
			w.Write([]byte("anonymous"))
			return
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write([]byte(u.Name))
	})
	good := a.Token(map[string]any{"name": "Ada"})
	expired := a.Token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	tests := []struct {
		name       string
		hard       bool
		header     string
		cookie     string
		wantStatus int
		wantBody   string
		wantAuth   string
	}{
		{"soft: no token passes anonymous", false, "", "", 200, "anonymous", ""},
		{"soft: valid token", false, "Bearer " + good, "", 200, "Ada", ""},
		{"soft: invalid token is 401", false, "Bearer " + expired, "", 401, "unauthorized\n", `Bearer realm="chat", error="invalid_token", error_description="token expired"`},
		{"hard: no token is 401", true, "", "", 401, "unauthorized\n", `Bearer realm="chat"`},
		{"hard: valid token", true, "Bearer " + good, "", 200, "Ada", ""},
		{"hard: lower-case scheme and extra spaces", true, "  bearer    " + good + "  ", "", 200, "Ada", ""},
		{"hard: Basic header is rejected", true, "Basic dXNlcjpwYXNz", "", 401, "unauthorized\n", `Bearer realm="chat"`},
		{"hard: __session cookie", true, "", good, 200, "Ada", ""},
		{"hard: garbage", true, "Bearer x.y.z", "", 401, "unauthorized\n", `Bearer realm="chat", error="invalid_token", error_description="malformed token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := v.Middleware(me)
			if tt.hard {
				h = v.RequireIdentity(me)
			}
			r := httptest.NewRequest("GET", "/me", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: "__session", Value: tt.cookie})
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody || w.Header().Get("WWW-Authenticate") != tt.wantAuth {
				t.Fatalf("got %d %q %q, want %d %q %q", w.Code, w.Body.String(), w.Header().Get("WWW-Authenticate"), tt.wantStatus, tt.wantBody, tt.wantAuth)
			}
		})
	}
}

func TestVerifyErrorsDoNotEchoTheToken(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *usersync.VerifierConfig) { c.CacheSize = -1; c.UnknownKeyWait = 50 * time.Millisecond }, a)
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
	v := newVerifier(t, func(c *usersync.VerifierConfig) { c.CacheSize = -1; c.UnknownKeyWait = 100 * time.Millisecond }, a, b)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		if _, err := v.Verify(context.Background(), a.TokenAlg(alg, nil)); err != nil {
			t.Fatalf("A's own %s token: %v", alg, err)
		}
		if _, err := v.Verify(context.Background(), b.TokenAlg(alg, nil)); err != nil {
			t.Fatalf("B's own %s token: %v", alg, err)
		}
		if _, err := v.Verify(context.Background(), b.TokenAlg(alg, map[string]any{"iss": a.URL})); !errors.Is(err, usersync.ErrBadSignature) {
			t.Fatalf("iss A signed by B (%s): err = %v, want ErrBadSignature", alg, err)
		}
	}
}

func TestVerifierCloseStopsBackgroundRefresh(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v, err := usersync.NewVerifier(context.Background(), usersync.VerifierConfig{
		Issuers: []usersync.IssuerConfig{{Issuer: a.URL}}, RefreshInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.Fetches() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	v.Close()
	time.Sleep(30 * time.Millisecond) // a refresh already under way may finish
	n := a.Fetches()
	time.Sleep(100 * time.Millisecond)
	if a.Fetches() != n {
		t.Fatalf("JWKS fetched %d more times after Close", a.Fetches()-n)
	}
	// Verify keeps working with the keys it has.
	if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
		t.Fatalf("Verify after Close: %v", err)
	}
}
