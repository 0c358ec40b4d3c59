package usersync_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync/jwtverify"
)

// standInIssuer returns an issuer with one ES256 key, given as PEM (as
// Clerk's dashboard shows its "JWT public key"), and the private key that
// signs its tokens.
func standInIssuer() (jwtverify.Issuer, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	return jwtverify.Issuer{
		URL:          "https://example.clerk.accounts.dev",
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}, key
}

func sign(key *ecdsa.PrivateKey, claims jwt.MapClaims) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(key)
	return s
}
