// Package pubkey reads the public keys of token issuers: a PEM key as
// Clerk's dashboard shows it, a JWKS, and the rule for where keys may be
// fetched from. The verifier and the Clerk package share it.
package pubkey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/MicahParks/jwkset"
)

// ParsePEM reads a public key in PEM form (PKIX "PUBLIC KEY", or a
// certificate), also with its line breaks lost, as it often arrives from
// a .env file.
func ParsePEM(s string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(rewrapPEM(s)))
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	default:
		return x509.ParsePKIXPublicKey(block.Bytes)
	}
}

// rewrapPEM puts back the line breaks of a one-line PEM block:
// "-----BEGIN PUBLIC KEY-----MIIB...-----END PUBLIC KEY-----".
func rewrapPEM(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, `\n`, "\n")) // the literal \n of some .env tools
	if strings.Contains(s, "\n") {
		return s // wrapped already
	}
	begin := strings.Index(s, "-----BEGIN ")
	if begin < 0 {
		return s
	}
	headerEnd := strings.Index(s[begin+11:], "-----")
	if headerEnd < 0 {
		return s
	}
	headerEnd += begin + 11 + 5
	end := strings.Index(s[headerEnd:], "-----END ")
	if end < 0 {
		return s
	}
	end += headerEnd
	body := strings.Join(strings.Fields(s[headerEnd:end]), "")
	return s[:headerEnd] + "\n" + body + "\n" + s[end:] + "\n"
}

// Key is one usable key of a JWKS.
type Key struct {
	// KID is the key's kid, "" if it has none.
	KID string
	// JWK is the key as jwkset parsed it.
	JWK jwkset.JWK
	// Public is its public key.
	Public crypto.PublicKey
}

// ParseJWKS reads a JWKS and returns its usable public keys (RSA, ECDSA,
// Ed25519): a symmetric key, a key of an unsupported type or a broken one
// is left out, so one bad key does not lose the others. It fails if body is not a JWKS or has no usable key.
func ParseJWKS(body []byte) ([]Key, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not JSON: %w", err)
	}
	keys := make([]Key, 0, len(set.Keys))
	for _, m := range set.Keys {
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		key := jwk.Key()
		if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			key = pk.Public() // a private key in a JWKS by mistake: its public half
		}
		switch key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, Key{KID: m.KID, JWK: jwk, Public: key})
		} // else a symmetric ("oct") key: never one to verify with
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable keys")
	}
	return keys, nil
}

// FetchJWKS GETs the JWKS at url with client and returns its usable keys
// (ParseJWKS). It fails on an answer other than 200 or one larger than
// maxSize bytes.
func FetchJWKS(ctx context.Context, client *http.Client, url string, maxSize int64) ([]Key, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > maxSize {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxSize)
	}
	return ParseJWKS(body)
}

// Equal reports whether two public keys are the same key.
func Equal(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// CheckURL checks that keys (or a secret key) may be sent to or fetched
// from rawURL: https, or plain http to this machine only (a dev server, a
// test), since anyone on the path of plain http could read or swap them.
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && Loopback(u.Hostname())) {
		return errors.New("not an https URL (or http on loopback)")
	}
	return nil
}

// Loopback reports whether host names this machine: "localhost" or a
// loopback IP.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
