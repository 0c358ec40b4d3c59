package jwtverify_test

import (
	"io"
	"time"

	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
	"github.com/usersync/usersync/usersynctest"
)

// rsaKeyOf fetches the issuer's JWKS and returns its RSA public key.
func rsaKeyOf(b *testing.B, i *usersynctest.Issuer) *rsa.PublicKey {
	resp, err := http.Get(i.JWKSURL())
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kty, N, E string }
	}
	json.NewDecoder(resp.Body).Decode(&set)
	for _, k := range set.Keys {
		if k.Kty == "RSA" {
			n, _ := base64.RawURLEncoding.DecodeString(k.N)
			e, _ := base64.RawURLEncoding.DecodeString(k.E)
			return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		}
	}
	b.Fatal("no RSA key")
	return nil
}

// floorVerify is the least a correct RS256 check can do: split, decode,
// verify the signature, decode the claims.
func floorVerify(pub *rsa.PublicKey, token string) error {
	header, rest, _ := strings.Cut(token, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	if _, err := base64.RawURLEncoding.DecodeString(header); err != nil {
		return err
	}
	rawSig, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return err
	}
	h := sha256.Sum256([]byte(token[:len(header)+1+len(payload)]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], rawSig); err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return err
	}
	var c struct {
		Iss  string `json:"iss"`
		Sub  string `json:"sub"`
		Exp  int64  `json:"exp"`
		Iat  int64  `json:"iat"`
		Nbf  int64  `json:"nbf"`
		Name string `json:"name"`
	}
	return json.Unmarshal(raw, &c)
}

func BenchmarkVerify(b *testing.B) {
	iss := usersynctest.NewIssuer(b)
	claims := map[string]any{"sub": "user_2abc", "name": "Ada Lovelace", "sid": "sess_123", "azp": "https://app.example.com"}
	token := iss.Token(claims)
	pub := rsaKeyOf(b, iss)
	ctx := context.Background()
	b.Run("RS256/floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := floorVerify(pub, token); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The libraries usersync builds on, alone: golang-jwt's parser with
	// the same options, and a keyfunc over the issuer's JWKS.
	b.Run("RS256/golang-jwt+keyfunc", func(b *testing.B) {
		resp, err := http.Get(iss.JWKSURL())
		if err != nil {
			b.Fatal(err)
		}
		jwks, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		kf, err := keyfunc.NewJWKSetJSON(jwks)
		if err != nil {
			b.Fatal(err)
		}
		parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}), jwt.WithLeeway(5*time.Second),
			jwt.WithExpirationRequired(), jwt.WithIssuedAt())
		b.ReportAllocs()
		for b.Loop() {
			var c struct {
				jwt.RegisteredClaims
				Name string `json:"name"`
			}
			if _, err := parser.ParseWithClaims(token, &c, kf.Keyfunc); err != nil {
				b.Fatal(err)
			}
		}
	})
	noCache := newVerifier(b, func(c *jwtverify.Config) { c.CacheSize = -1 }, iss)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		tok := iss.TokenAlg(alg, claims)
		b.Run(alg+"/usersync", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := noCache.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	cached := newVerifier(b, nil, iss)
	b.Run("cache-hit", func(b *testing.B) {
		b.ReportAllocs()
		if _, err := cached.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := cached.Verify(ctx, token); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same hit with the check of ended sessions, against a Set of
	// 10,000 ended sessions and 1,000 deleted users.
	set := endedSet(b)
	checked := newVerifier(b, func(c *jwtverify.Config) { c.Sessions = set }, iss)
	b.Run("cache-hit/sessions", func(b *testing.B) {
		b.ReportAllocs()
		if _, err := checked.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := checked.Verify(ctx, token); err != nil {
				b.Fatal(err)
			}
		}
	})
	checkedNoCache := newVerifier(b, func(c *jwtverify.Config) { c.CacheSize, c.Sessions = -1, set }, iss)
	rs256 := iss.TokenAlg("RS256", claims) // RS256/usersync's
	b.Run("RS256/usersync/sessions", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := checkedNoCache.Verify(ctx, rs256); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The current-user middleware: verify (cache hit) and a memstore
	// lookup of the stored user, through httptest.
	b.Run("RequireUser", func(b *testing.B) {
		b.ReportAllocs()
		syncer, err := usersync.New(usersync.Config{Store: memstore.New(), Extractor: cached})
		if err != nil {
			b.Fatal(err)
		}
		h := syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, _ := usersync.UserFromContext(r.Context())
			w.Write([]byte(u.ID))
		}))
		r := httptest.NewRequest("GET", "/me", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		}
	})
}

// endedSet returns a sessions.Set over a memstore holding 10,000 ended
// sessions and 1,000 deleted users, none of them the benchmark's.
func endedSet(b *testing.B) *sessions.Set {
	ctx := context.Background()
	store := memstore.New()
	var endings []sessions.Ending
	for i := range 10_000 {
		endings = append(endings, sessions.Ending{Issuer: "https://issuer.test", SessionID: fmt.Sprintf("sess_%026d", i), EndedAt: time.Now()})
	}
	for i := range 1000 {
		endings = append(endings, sessions.Ending{Issuer: "https://issuer.test", Subject: fmt.Sprintf("user_gone%d", i), EndedAt: time.Now()})
	}
	if err := store.EndSessions(ctx, endings...); err != nil {
		b.Fatal(err)
	}
	set, err := sessions.New(ctx, sessions.Config{Store: store, Poll: 30 * time.Minute, MaxStale: time.Hour}) // no reads during the benchmark
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { set.Close() })
	return set
}
