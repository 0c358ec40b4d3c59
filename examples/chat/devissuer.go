package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// devIssuer is the development issuer of dev mode: it mints a token for any
// name and user id typed into the page. It is never
// on when CLERK_ISSUER is set.
type devIssuer struct {
	url string
	key *rsa.PrivateKey
	kid string
}

func newDevIssuer(url string) (*devIssuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	kid := make([]byte, 8)
	rand.Read(kid)
	return &devIssuer{url: url, key: key, kid: base64.RawURLEncoding.EncodeToString(kid)}, nil
}

// publicKeyPEM returns the issuer's public key in PEM form: the verifier
// checks dev tokens with it, with no JWKS to fetch.
func (d *devIssuer) publicKeyPEM() string {
	der, _ := x509.MarshalPKIXPublicKey(&d.key.PublicKey) // cannot fail with an RSA key
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

var devUserID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// serveToken mints a one-hour token for {"name": ..., "userId": ...}.
func (d *devIssuer) serveToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name   string `json:"name"`
		UserID string `json:"userId"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&in); err != nil || !devUserID.MatchString(in.UserID) || len(in.Name) > 100 {
		writeError(w, http.StatusBadRequest, `want {"name": "...", "userId": "[A-Za-z0-9_-]{1,64}"}`)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": d.token(in.UserID, in.Name, time.Now())})
}

func (d *devIssuer) token(sub, name string, now time.Time) string {
	sid := make([]byte, 8)
	rand.Read(sid)
	// sid: a session token, as Clerk's are (JWT-template tokens are refused).
	claims := jwt.MapClaims{"iss": d.url, "sub": sub, "sid": "sess_dev_" + base64.RawURLEncoding.EncodeToString(sid),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if name != "" {
		claims["name"] = name
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = d.kid
	s, _ := t.SignedString(d.key) // cannot fail with an RSA key
	return s
}
