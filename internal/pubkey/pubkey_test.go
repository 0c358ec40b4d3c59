package pubkey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://keys.example.com/jwks.json":      true,
		"https://api.clerk.com/v1":                true,
		"http://127.0.0.1:8080/jwks":              true,
		"http://localhost/jwks":                   true,
		"http://[::1]:1/jwks":                     true,
		"http://keys.example.com/jwks.json":       false, // keys an on-path attacker could swap
		"http://localhost.example.com/jwks":       false,
		"http://10.0.0.1/jwks":                    false,
		"http://127.0.0.1.nip.io/jwks":            false,
		"ftp://keys.example.com/jwks":             false,
		"file:///etc/passwd":                      false,
		"https:///no-host":                        false,
		"::not a url":                             false,
		"":                                        false,
		"https://user:pass@keys.example.com/jwks": true,
	} {
		if err := CheckURL(url); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok %v", url, err, ok)
		}
	}
}

func rsaJWK(t testing.TB, kid string) (map[string]string, *rsa.PrivateKey) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return map[string]string{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}, k
}

// A JWKS yields its usable keys, each equal to itself only; a broken key
// is left out, not the set; a set with none fails.
func TestParseJWKS(t *testing.T) {
	a, ka := rsaJWK(t, "ins_a")
	b, _ := rsaJWK(t, "ins_b")
	broken := map[string]string{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}
	body, _ := json.Marshal(map[string]any{"keys": []any{a, broken, b, map[string]string{"kty": "oct", "k": "c2VjcmV0"}}})
	keys, err := ParseJWKS(body)
	if err != nil || len(keys) != 2 { // the broken and the symmetric key left out
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	if keys[0].KID != "ins_a" || !Equal(keys[0].Public, &ka.PublicKey) || Equal(keys[0].Public, keys[1].Public) {
		t.Fatalf("keys %+v", keys)
	}
	for _, bad := range []string{``, `{}`, `{"keys":[]}`, `{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}`, `[1,2]`, `<html>`} {
		if keys, err := ParseJWKS([]byte(bad)); err == nil {
			t.Errorf("ParseJWKS(%q) = %d keys, want an error", bad, len(keys))
		}
	}
}

// A PEM key is read wrapped, on one line, or with literal \n, as .env
// files hold it; the same key, its certificate aside, equals a JWK's.
func TestParsePEM(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	wrapped := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	oneLine := strings.ReplaceAll(wrapped, "\n", "")
	literal := strings.ReplaceAll(wrapped, "\n", `\n`)
	for name, s := range map[string]string{"wrapped": wrapped, "one line": oneLine, `literal \n`: literal} {
		got, err := ParsePEM(s)
		if err != nil || !Equal(got, &k.PublicKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range []string{"", "not a key", "-----BEGIN PUBLIC KEY-----AAAA-----END PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----"} {
		if _, err := ParsePEM(bad); err == nil {
			t.Errorf("ParsePEM(%q): no error", bad)
		}
	}
}

// Whatever a server answers, ParseJWKS returns keys or an error, and
// nothing panics.
func FuzzParseJWKS(f *testing.F) {
	a, _ := rsaJWK(f, "ins_2abc")
	real, _ := json.Marshal(map[string]any{"keys": []any{a}})
	for _, s := range []string{string(real), `{"keys":[]}`, `{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`, `{"keys":null}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := ParseJWKS(body)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range keys {
			if k.Public == nil {
				t.Fatal("a key without a public key")
			}
		}
	})
}

// Whatever an environment variable holds, ParsePEM returns a key or an
// error, and nothing panics.
func FuzzParsePEM(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	wrapped := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for _, s := range []string{wrapped, strings.ReplaceAll(wrapped, "\n", ""), strings.ReplaceAll(wrapped, "\n", `\n`), "-----BEGIN -----", "-----BEGIN X-----a-----END"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if key, err := ParsePEM(s); err == nil && key == nil {
			t.Fatal("no error and no key")
		}
	})
}

// FetchJWKS reads a JWKS of at most maxSize bytes from a 200, and fails
// clearly on anything else.
func TestFetchJWKS(t *testing.T) {
	a, _ := rsaJWK(t, "ins_a")
	good, _ := json.Marshal(map[string]any{"keys": []any{a}})
	for name, tc := range map[string]struct {
		status int
		body   []byte
		want   string // "" for success
	}{
		"a JWKS":     {200, good, ""},
		"too large":  {200, append(good, bytes.Repeat([]byte(" "), 4096)...), "larger than"},
		"not found":  {404, good, "answered 404"},
		"not a JWKS": {200, []byte("<html>"), "not JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				w.Write(tc.body)
			}))
			defer srv.Close()
			keys, err := FetchJWKS(context.Background(), srv.Client(), srv.URL, int64(len(good))+100)
			switch {
			case tc.want == "" && (err != nil || len(keys) != 1):
				t.Fatalf("%d keys, %v", len(keys), err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
