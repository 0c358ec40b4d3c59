package usersynctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is a fake OpenID Connect token issuer on a loopback httptest
// server, in the spirit of httptest.Server: it serves a JWKS with an RS256,
// an ES256 and an EdDSA key at URL + "/.well-known/jwks.json" and mints
// tokens signed with them. Use it to test handlers behind a jwtverify.Verifier.
type Issuer struct {
	// URL is the issuer: the iss of its tokens and the base of its JWKS.
	URL string

	t       testing.TB
	srv     *httptest.Server
	fetches atomic.Int64

	mu   sync.Mutex
	keys map[string]*signingKey // by alg
	mode JWKSMode
}

type signingKey struct {
	kid  string
	alg  jwt.SigningMethod
	priv crypto.Signer
}

// JWKSMode is how the issuer's JWKS endpoint answers.
type JWKSMode int

const (
	// JWKSOK serves the current keys.
	JWKSOK JWKSMode = iota
	// JWKS500 answers 500 Internal Server Error.
	JWKS500
	// JWKSGarbage answers 200 with a body that is not a JWKS.
	JWKSGarbage
	// JWKSEmpty answers 200 with an empty key set.
	JWKSEmpty
)

// NewIssuer starts a fake issuer; it stops when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{t: t}
	i.keys = i.newKeys()
	i.srv = httptest.NewServer(http.HandlerFunc(i.serveJWKS))
	i.URL = i.srv.URL
	t.Cleanup(i.srv.Close)
	return i
}

func (i *Issuer) newKeys() map[string]*signingKey {
	i.t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		i.t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		i.t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		i.t.Fatal(err)
	}
	return map[string]*signingKey{
		"RS256": {kid: "rsa-" + randomID(), alg: jwt.SigningMethodRS256, priv: rsaKey},
		"ES256": {kid: "ec-" + randomID(), alg: jwt.SigningMethodES256, priv: ecKey},
		"EdDSA": {kid: "ed-" + randomID(), alg: jwt.SigningMethodEdDSA, priv: edKey},
	}
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// JWKSURL returns the URL of the issuer's key set.
func (i *Issuer) JWKSURL() string { return i.URL + "/.well-known/jwks.json" }

// Fetches returns how many times the JWKS has been requested.
func (i *Issuer) Fetches() int { return int(i.fetches.Load()) }

// SetJWKSMode changes how the JWKS endpoint answers from now on.
func (i *Issuer) SetJWKSMode(m JWKSMode) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.mode = m
}

// Rotate replaces every signing key with a new one (new kids); tokens
// signed with the old keys no longer verify once a verifier refreshes.
func (i *Issuer) Rotate() {
	keys := i.newKeys()
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = keys
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/.well-known/jwks.json" {
		http.NotFound(w, r)
		return
	}
	i.fetches.Add(1)
	i.mu.Lock()
	mode, keys := i.mode, i.keys
	i.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch mode {
	case JWKS500:
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case JWKSGarbage:
		fmt.Fprint(w, "<html>not a key set")
		return
	case JWKSEmpty:
		fmt.Fprint(w, `{"keys":[]}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwk(keys["RS256"]), jwk(keys["ES256"]), jwk(keys["EdDSA"])}})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk returns the public JWK of k.
func jwk(k *signingKey) map[string]any {
	m := map[string]any{"kid": k.kid, "alg": k.alg.Alg(), "use": "sig"}
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PrivateKey:
		x, y := make([]byte, 32), make([]byte, 32)
		p.X.FillBytes(x)
		p.Y.FillBytes(y)
		m["kty"], m["crv"], m["x"], m["y"] = "EC", "P-256", b64(x), b64(y)
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(p.Public().(ed25519.PublicKey))
	}
	return m
}

// Token returns an RS256 token with the given claims on top of defaults:
// iss = URL, sub = "user_test", sid = "sess_test", iat and nbf = now, exp =
// now + 1 minute (the claims and lifetime of a Clerk session token). A
// claim set to nil is left out.
func (i *Issuer) Token(claims map[string]any) string {
	i.t.Helper()
	return i.TokenAlg("RS256", claims)
}

// TokenAlg is Token signed with the issuer's key for alg: "RS256",
// "ES256" or "EdDSA".
func (i *Issuer) TokenAlg(alg string, claims map[string]any) string {
	i.t.Helper()
	i.mu.Lock()
	k := i.keys[alg]
	i.mu.Unlock()
	if k == nil {
		i.t.Fatalf("usersynctest: the issuer has no %s key", alg)
	}
	now := time.Now()
	all := jwt.MapClaims{"iss": i.URL, "sub": "user_test", "sid": "sess_test", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	for name, v := range claims {
		if v == nil {
			delete(all, name)
			continue
		}
		all[name] = v
	}
	tok := jwt.NewWithClaims(k.alg, all)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		i.t.Fatal(err)
	}
	return s
}

// PublicKeyPEM returns the issuer's RS256 public key in PEM form, as
// Clerk's dashboard shows its "JWT public key", for a verifier that needs
// no JWKS (jwtverify.Issuer.PublicKeyPEM).
func (i *Issuer) PublicKeyPEM() string {
	i.mu.Lock()
	k := i.keys["RS256"]
	i.mu.Unlock()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		i.t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
