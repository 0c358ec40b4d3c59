package usersync_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

// Mount the soft middleware on an http.ServeMux and read the current user.
// The issuer here is a stand-in served by httptest; with Clerk, Issuer is
// your Frontend API URL and nothing else changes.
func ExampleVerifier_Middleware() {
	// A stand-in issuer: one ES256 key, published as a JWKS.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	x, y := make([]byte, 32), make([]byte, 32)
	key.X.FillBytes(x)
	key.Y.FillBytes(y)
	b64 := base64.RawURLEncoding.EncodeToString
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{
			"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "x": b64(x), "y": b64(y),
		}}})
	}))
	defer issuer.Close()

	ctx := context.Background()
	verifier, err := usersync.NewVerifier(ctx, usersync.VerifierConfig{
		Issuers: []usersync.IssuerConfig{{Issuer: issuer.URL}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer verifier.Close()
	syncer := usersync.New(memstore.New())

	mux := http.NewServeMux()
	mux.Handle("GET /api/me", verifier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := syncer.GetCurrent(r.Context())
		switch {
		case err != nil:
			http.Error(w, "store failed", http.StatusInternalServerError)
		case user == nil:
			fmt.Fprintln(w, "anonymous, or not stored yet")
		default:
			fmt.Fprintln(w, "hello", user.Name)
		}
	})))
	mux.Handle("POST /api/users/store", verifier.RequireIdentity(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := usersync.FromContext(r.Context())
		if _, err := syncer.StoreCurrentUser(r.Context(), id); err != nil {
			http.Error(w, "cannot store", http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, "stored")
	})))

	// A session token for user_2abc, as the issuer would mint it.
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": issuer.URL, "sub": "user_2abc", "name": "Ada", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
	})
	tok.Header["kid"] = "k1"
	token, _ := tok.SignedString(key)

	call := func(method, path, token string) {
		r := httptest.NewRequest(method, path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	call("GET", "/api/me", "")
	call("GET", "/api/me", token)
	call("POST", "/api/users/store", token)
	call("GET", "/api/me", token)
	// Output:
	// 200 anonymous, or not stored yet
	// 200 anonymous, or not stored yet
	// 200 stored
	// 200 hello Ada
}
