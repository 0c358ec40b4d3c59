package jwtverify_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/usersynctest"
)

// A token verified with a key that a later refresh no longer lists (a
// rotation that removed it, or a revocation) stops verifying at once, not
// when it expires: the cache forgets it.
func TestCachedTokenOfARemovedKeyStopsVerifying(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.RefreshInterval = 20 * time.Millisecond }, a)
	tok := a.Token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	for range 2 { // the second from the cache
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	a.Rotate() // the old keys are gone from the JWKS
	waitFetches(t, a, a.Fetches()+2)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, jwtverify.ErrBadSignature) {
		t.Fatalf("a token of a removed key: err = %v, want ErrBadSignature", err)
	}
	if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
}

// jwksServer serves a JWKS of RS256 keys that a test changes at will.
type jwksServer struct {
	URL  string
	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey // by kid
}

func newJWKSServer(t *testing.T, keys map[string]*rsa.PrivateKey) *jwksServer {
	s := &jwksServer{keys: keys}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var set []map[string]string
		for kid, k := range s.keys {
			set = append(set, map[string]string{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
				"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()), "e": "AQAB"})
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *jwksServer) set(keys map[string]*rsa.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// signRS256 returns an RS256 token of iss signed with key, with kid in its
// header unless kid is "".
func signRS256(t *testing.T, iss, kid string, key *rsa.PrivateKey) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": iss, "sub": "user_k", "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix()})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A cached token is tied to the key that verified it, not to its kid: a
// token without a kid, or one whose kid now names another key, stops
// verifying from the cache once a refresh no longer lists its key.
func TestCachedTokenIsTiedToItsKey(t *testing.T) {
	k1, k2, k3 := rsaKey(t), rsaKey(t), rsaKey(t)
	for _, tc := range []struct {
		name  string
		kid   string                     // of the cached token, signed by k1
		after map[string]*rsa.PrivateKey // the JWKS after the refresh
	}{
		{"no kid, its key removed", "", map[string]*rsa.PrivateKey{"b": k2, "c": k3}},
		{"its kid names another key", "a", map[string]*rsa.PrivateKey{"a": k2, "c": k3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jwks := newJWKSServer(t, map[string]*rsa.PrivateKey{"a": k1, "b": k2})
			v, err := jwtverify.New(context.Background(), jwtverify.Config{
				Issuers: []jwtverify.Issuer{{URL: jwks.URL}}, Logger: slog.New(slog.DiscardHandler),
				RefreshInterval: time.Hour, UnknownKeyWait: time.Minute, // refreshed only when this test asks
			})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			tok := signRS256(t, jwks.URL, tc.kid, k1)
			for range 2 { // the second from the cache
				if _, err := v.Verify(context.Background(), tok); err != nil {
					t.Fatal(err)
				}
			}
			jwks.set(tc.after)
			// A token of an unknown kid fetches the JWKS before it answers.
			if _, err := v.Verify(context.Background(), signRS256(t, jwks.URL, "c", k3)); err != nil {
				t.Fatalf("a token of the new key: %v", err)
			}
			if _, err := v.Verify(context.Background(), tok); !errors.Is(err, jwtverify.ErrBadSignature) {
				t.Fatalf("a cached token of a removed key: err = %v, want ErrBadSignature", err)
			}
			// Tokens of the keys that stayed still verify, kid or none.
			if _, err := v.Verify(context.Background(), signRS256(t, jwks.URL, "", k3)); err != nil {
				t.Fatalf("a token without a kid of a listed key: %v", err)
			}
		})
	}
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The header is read as golang-jwt reads it: member names count byte for
// byte, alg must be a string, and a kid present must be a string. Each
// token here is signed by the issuer's key, so only the header decides.
func TestHeaderIsReadStrictly(t *testing.T) {
	k := rsaKey(t)
	jwks := newJWKSServer(t, map[string]*rsa.PrivateKey{"a": k})
	v := newVerifier(t, func(c *jwtverify.Config) { c.Issuers = []jwtverify.Issuer{{URL: jwks.URL}} })
	now := time.Now()
	claims := fmt.Sprintf(`{"iss":%q,"sub":"user_k","iat":%d,"exp":%d}`, jwks.URL, now.Unix(), now.Add(time.Hour).Unix())
	sign := func(header string) string {
		enc := base64.RawURLEncoding
		signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
		sig, err := jwt.SigningMethodRS256.Sign(signing, k)
		if err != nil {
			t.Fatal(err)
		}
		return signing + "." + enc.EncodeToString(sig)
	}
	tests := []struct {
		header string
		ok     bool
	}{
		{`{"alg":"RS256","kid":"a"}`, true},
		{`{"alg":"RS256"}`, true}, // no kid: every key is tried
		{`{"ALG":"RS256","kid":"a"}`, false},
		{`{"alg":"RS256","Alg":"ES256","kid":"a"}`, true}, // alg is alg; Alg is another member
		{`{"alg":"ES256","Alg":"RS256","kid":"a"}`, false},
		{`{"alg":"RS256","kid":null}`, false},
		{`{"alg":"RS256","kid":7}`, false},
		{`{"alg":["RS256"],"kid":"a"}`, false},
		{`null`, false},
		{`["RS256"]`, false},
	}
	for _, tt := range tests {
		_, err := v.Verify(context.Background(), sign(tt.header))
		if (err == nil) != tt.ok {
			t.Errorf("header %s: %v, want ok %v", tt.header, err, tt.ok)
		}
		if err != nil && !errors.Is(err, usersync.ErrInvalidToken) {
			t.Errorf("header %s: %v, want ErrInvalidToken", tt.header, err)
		}
	}
}
