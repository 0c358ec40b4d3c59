package jwtverify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/usersynctest"
)

// fixedIssuer is a trusted issuer whose keys and iss are the same in every
// process: the fuzzer's workers rebuild the verifier, and an input mutated
// from a seed token of such an issuer still verifies in them.
type fixedIssuer struct {
	url  string
	keys map[string]crypto.Signer // by alg: EdDSA, ES256
	jwks []byte                   // the public key set
}

func newFixedIssuer(t testing.TB, name string) *fixedIssuer {
	seed := sha256.Sum256([]byte("jwtverify fuzz " + name))
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:])
	if err != nil {
		t.Fatal(err)
	}
	i := &fixedIssuer{
		url:  "https://" + name + ".example",
		keys: map[string]crypto.Signer{"EdDSA": ed25519.NewKeyFromSeed(seed[:]), "ES256": ec},
	}
	point, err := ec.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	i.jwks, err = json.Marshal(map[string]any{"keys": []any{
		map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(i.keys["EdDSA"].Public().(ed25519.PublicKey)), "kid": i.kid("EdDSA"), "alg": "EdDSA", "use": "sig"},
		map[string]any{"kty": "EC", "crv": "P-256", "x": enc(point[1:33]), "y": enc(point[33:65]), "kid": i.kid("ES256"), "alg": "ES256", "use": "sig"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func (i *fixedIssuer) kid(alg string) string { return i.url + "#" + alg }

// sign returns claims signed with the issuer's key for alg.
func (i *fixedIssuer) sign(t testing.TB, alg string, claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims)
	tok.Header["kid"] = i.kid(alg)
	s, err := tok.SignedString(i.keys[alg])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsOf returns the decoded claims segment of a token.
func claimsOf(t testing.TB, token string) string {
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// FuzzVerify feeds the whole verify path (size cap, decoding, routing by
// issuer, keys, signature, claims) with valid and broken tokens of three
// trusted issuers. It must never panic, and may accept a token only if the
// issuer it names signed those very claims: an accepted token's claims are
// looked up among the claims each issuer signed. Every token has claims of
// its own (a "jti"), so a token signed by one issuer's key but naming
// another, or one whose claims were swapped under a signature, has claims
// its named issuer never signed.
//
// Issuers a and b have fixed keys (see fixedIssuer), so their seeds verify
// in every fuzzing worker; c is a usersynctest.Issuer with fresh keys, for
// RS256, whose seeds verify in the process that signed them (go test's
// run of the seeds).
func FuzzVerify(f *testing.F) {
	a, b := newFixedIssuer(f, "a"), newFixedIssuer(f, "b")
	mux := http.NewServeMux()
	for _, i := range []*fixedIssuer{a, b} {
		mux.HandleFunc("/"+strings.TrimPrefix(i.url, "https://"), func(w http.ResponseWriter, r *http.Request) {
			w.Write(i.jwks)
		})
	}
	srv := httptest.NewServer(mux)
	f.Cleanup(srv.Close)
	c := usersynctest.NewIssuer(f)
	v := newVerifier(f, func(cfg *jwtverify.Config) {
		cfg.CacheSize = -1
		cfg.Issuers = append(cfg.Issuers,
			jwtverify.Issuer{URL: a.url, JWKSURL: srv.URL + "/a.example"},
			jwtverify.Issuer{URL: b.url, JWKSURL: srv.URL + "/b.example"})
	}, c)

	// signed[iss] holds the claims that the issuer iss signed naming
	// itself.
	signed := map[string]map[string]bool{a.url: {}, b.url: {}, c.URL: {}}
	jti := 0
	claims := func(iss string, extra map[string]any) jwt.MapClaims {
		jti++
		// Fixed times, for tokens that are the same in every process.
		m := jwt.MapClaims{"iss": iss, "sub": "user_1", "jti": fmt.Sprint("t", jti), "iat": 1700000000, "nbf": 1700000000, "exp": 4102444800}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	var good, forged []string
	for _, i := range []*fixedIssuer{a, b} {
		for _, alg := range []string{"EdDSA", "ES256"} {
			tok := i.sign(f, alg, claims(i.url, map[string]any{"name": "Ada", "email": "ada@example.com", "aud": []string{"x", "y"}}))
			signed[i.url][claimsOf(f, tok)] = true
			good = append(good, tok)
		}
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		tok := c.TokenAlg(alg, map[string]any{"jti": fmt.Sprint("c", alg), "exp": time.Now().Add(24 * time.Hour).Unix(), "o": map[string]any{"id": "org_1"}})
		signed[c.URL][claimsOf(f, tok)] = true
		good = append(good, tok)
	}
	// Signed by one issuer's key, naming another.
	forged = append(forged,
		b.sign(f, "EdDSA", claims(a.url, nil)),
		a.sign(f, "ES256", claims(b.url, nil)),
		a.sign(f, "EdDSA", claims(c.URL, nil)),
		c.Token(map[string]any{"iss": a.url, "jti": "c-as-a"}),
	)
	// A's header and signature around claims it never signed.
	parts := strings.Split(good[0], ".")
	unsigned, _ := json.Marshal(claims(a.url, nil))
	forged = append(forged, parts[0]+"."+base64.RawURLEncoding.EncodeToString(unsigned)+"."+parts[2])

	// The check below is only honest if good tokens do verify.
	for _, tok := range good {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			f.Fatalf("a token its issuer signed: %v", err)
		}
	}
	for _, tok := range append(good, forged...) {
		f.Add(tok)
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + ".." + parts[2])
		f.Add(strings.ToUpper(tok))
	}
	f.Add(a.sign(f, "EdDSA", claims(a.url, map[string]any{"exp": 1})))
	f.Add("")
	f.Add("....")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6MX0.eyJpc3MiOjF9.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(context.Background(), token)
		// Not the token's text: base64 allows a few spellings of the
		// signature's last bits, and they verify alike.
		if err == nil && !signed[id.Issuer][string(id.Claims)] {
			t.Fatalf("accepted claims that issuer %q never signed: %s", id.Issuer, id.Claims)
		}
		if err != nil && strings.Contains(err.Error(), token) && len(token) > 16 {
			t.Fatalf("error text contains the token")
		}
	})
}
