package jwtverify_test

import (
	"context"
	"strings"
	"testing"

	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/usersynctest"
)

// FuzzVerify feeds the whole verify path (size cap, decoding, routing by
// issuer, signature, claims) with valid and broken tokens. It must never
// panic, and must accept only the exact tokens the issuer signed.
func FuzzVerify(f *testing.F) {
	a := usersynctest.NewIssuer(f)
	v := newVerifier(f, func(c *jwtverify.Config) { c.CacheSize = -1 }, a)
	signed := map[string]bool{}
	for _, tok := range []string{
		a.Token(nil),
		a.TokenAlg("ES256", map[string]any{"name": "Ada", "email": "ada@example.com"}),
		a.TokenAlg("EdDSA", map[string]any{"aud": []string{"x", "y"}, "o": map[string]any{"id": "org_1"}}),
		a.Token(map[string]any{"exp": 1}),
	} {
		signed[tok] = true
		f.Add(tok)
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + ".." + parts[2])
		f.Add(strings.ToUpper(tok))
	}
	f.Add("")
	f.Add("....")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6MX0.eyJpc3MiOjF9.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(context.Background(), token)
		if err == nil && !signed[token] {
			// Only a token the issuer signed may verify; base64 allows a
			// few equivalent spellings of the signature's last bits, so
			// check the identity instead of the text.
			if id.Issuer != a.URL {
				t.Fatalf("accepted a token of issuer %q", id.Issuer)
			}
		}
		if err != nil && strings.Contains(err.Error(), token) && len(token) > 16 {
			t.Fatalf("error text contains the token")
		}
	})
}
