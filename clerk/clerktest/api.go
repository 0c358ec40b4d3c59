package clerktest

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// API is a fake of the user list of Clerk's Backend API, served by an
// httptest.Server that closes when the test ends:
//
//   - GET /users?limit=&offset=&order_by= answers a JSON array of users:
//     limit 1 to 500 (default 10), offset 0 or more, order_by created_at or
//     updated_at, prefixed "+" (ascending) or "-" (descending, and the
//     default: -created_at), ties broken by ID;
//   - GET /users/count answers {"object":"total_count","total_count":N};
//   - GET /users/{id} answers the user, or 404;
//   - GET /jwks answers the instance's signing keys, a JWKS.
//
// The server also serves the instance's Frontend API JWKS, without a
// secret key, at JWKSURL. The instance has an RS256 key of its own
// (PublicKeyPEM), or the keys SetJWKS gives it.
//
// Every other request needs "Authorization: Bearer " + SecretKey (else 401);
// bad parameters answer 422, as Clerk does. Users are rendered to JSON
// once, when put, so that large lists serve fast.
type API struct {
	// URL is the base URL, for clerk.Config.APIURL.
	URL string
	// SecretKey is the key requests must carry, for clerk.Config.SecretKey.
	SecretKey string
	// JWKSURL serves the instance's signing keys as its Frontend API does,
	// for clerk.Config.JWKSURL.
	JWKSURL string

	mu       sync.Mutex
	users    []apiUser        // by (created, id)
	created  map[string]int64 // the created of each user, to find them
	faults   []fault
	jwks     []byte          // the instance's JWKS; nil until first needed
	key      *rsa.PrivateKey // the instance's own key, if jwks is its
	onPage   func(offset int)
	requests int
}

type apiUser struct {
	id               string
	created, updated int64
	json             []byte
}

type fault struct {
	status     int
	retryAfter time.Duration
}

// NewAPI starts an empty fake API with a random secret key.
func NewAPI(t testing.TB) *API {
	t.Helper()
	a := &API{SecretKey: "sk_test_" + rand.Text(), created: map[string]int64{}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	a.URL = srv.URL + "/v1"
	a.JWKSURL = srv.URL + "/.well-known/jwks.json"
	return a
}

// SetJWKS makes the instance's signing keys those of jwks (a JWKS, as an
// issuer under test serves it), so that a secret key of this API belongs
// to that issuer.
func (a *API) SetJWKS(jwks []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.jwks, a.key = bytes.Clone(jwks), nil
}

// PublicKeyPEM returns the instance's own RS256 public key in PEM form, as
// Clerk's dashboard shows it, for clerk.Config.PublicKeyPEM.
func (a *API) PublicKeyPEM() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ownKeyLocked()
	if a.key == nil {
		panic("clerktest: PublicKeyPEM of an API whose keys SetJWKS gave")
	}
	der, err := x509.MarshalPKIXPublicKey(&a.key.PublicKey)
	if err != nil {
		panic(err) // cannot happen: an RSA key marshals
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// ownKeyLocked makes the instance's own key, once, unless SetJWKS gave it
// keys. The caller holds a.mu.
func (a *API) ownKeyLocked() {
	if a.jwks != nil {
		return
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	kid := "ins_" + rand.Text()
	b64 := base64.RawURLEncoding.EncodeToString
	a.key = key
	a.jwks, _ = json.Marshal(map[string]any{"keys": []map[string]string{{
		"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
}

// instanceJWKS returns the instance's JWKS.
func (a *API) instanceJWKS() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ownKeyLocked()
	return a.jwks
}

// Put adds users, or replaces those with the same ID (keeping their place
// in the created_at order, as Clerk never changes created_at).
func (a *API) Put(users ...User) {
	for _, u := range users {
		d := u.clerk()
		b, err := json.Marshal(d)
		if err != nil {
			panic(err) // cannot happen: every field marshals
		}
		au := apiUser{id: u.ID, created: d.CreatedAt, updated: d.UpdatedAt, json: b}
		a.mu.Lock()
		if i, ok := a.find(u.ID); ok {
			au.created = a.users[i].created
			a.users[i] = au
		} else {
			i, _ := slices.BinarySearchFunc(a.users, au, compareCreated)
			a.users = slices.Insert(a.users, i, au)
			a.created[u.ID] = au.created
		}
		a.mu.Unlock()
	}
}

// Remove deletes the users with the given IDs, as deleting them in Clerk
// does. Unknown IDs are ignored.
func (a *API) Remove(ids ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		if i, ok := a.find(id); ok {
			a.users = slices.Delete(a.users, i, i+1)
			delete(a.created, id)
		}
	}
}

// find returns the index of the user with the given ID. The caller holds
// a.mu.
func (a *API) find(id string) (int, bool) {
	created, ok := a.created[id]
	if !ok {
		return 0, false
	}
	return slices.BinarySearchFunc(a.users, apiUser{id: id, created: created}, compareCreated)
}

func compareCreated(x, y apiUser) int {
	return cmp.Or(cmp.Compare(x.created, y.created), strings.Compare(x.id, y.id))
}

// Fail makes the next n requests fail with status; a 429 carries
// Retry-After: retryAfter, in whole seconds, as Clerk sends it (none if
// retryAfter is negative).
func (a *API) Fail(n, status int, retryAfter time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range n {
		a.faults = append(a.faults, fault{status, retryAfter})
	}
}

// OnPage sets a function called before each page of GET /users is served,
// with its offset: a test changes the list there, as users who sign up or
// are deleted while a sweep pages do.
func (a *API) OnPage(f func(offset int)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onPage = f
}

// Requests returns how many requests the Backend API has answered, failed
// ones included.
func (a *API) Requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/.well-known/jwks.json" && r.Method == http.MethodGet {
		writeJSON(w, a.instanceJWKS()) // the Frontend API's: public, not counted, never failed
		return
	}
	a.mu.Lock()
	a.requests++
	var f *fault
	if len(a.faults) > 0 {
		f = &a.faults[0]
		a.faults = a.faults[1:]
	}
	a.mu.Unlock()
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(a.SecretKey)) != 1:
		clerkError(w, http.StatusUnauthorized, "authentication_invalid", "The provided secret key is invalid.")
		return
	case f != nil:
		if f.status == http.StatusTooManyRequests {
			if f.retryAfter >= 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(f.retryAfter.Round(time.Second)/time.Second)))
			}
			clerkError(w, f.status, "too_many_requests", "Too many requests, please try again later.")
			return
		}
		clerkError(w, f.status, "internal_clerk_error", "Oops, an unexpected error occurred.")
		return
	case r.Method != http.MethodGet:
		clerkError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Only GET is faked.")
		return
	}
	switch path := strings.TrimPrefix(r.URL.Path, "/v1"); {
	case path == "/users":
		a.list(w, r)
	case path == "/jwks":
		writeJSON(w, a.instanceJWKS())
	case path == "/users/count":
		a.mu.Lock()
		n := len(a.users)
		a.mu.Unlock()
		writeJSON(w, []byte(`{"object":"total_count","total_count":`+strconv.Itoa(n)+`}`))
	case strings.HasPrefix(path, "/users/") && !strings.Contains(path[len("/users/"):], "/"):
		a.mu.Lock()
		i, ok := a.find(path[len("/users/"):])
		var b []byte
		if ok {
			b = a.users[i].json
		}
		a.mu.Unlock()
		if !ok {
			clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
			return
		}
		writeJSON(w, b)
	default:
		clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
	}
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset := 10, 0
	var err error
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 500 {
			clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "limit must be 1 to 500")
			return
		}
	}
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "offset must be 0 or more")
			return
		}
	}
	order := cmp.Or(q.Get("order_by"), "-created_at")
	desc := strings.HasPrefix(order, "-")
	field := strings.TrimLeft(order, "+-")
	if field != "created_at" && field != "updated_at" {
		clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "order_by: only created_at and updated_at are faked")
		return
	}
	a.mu.Lock()
	onPage := a.onPage
	a.mu.Unlock()
	if onPage != nil {
		onPage(offset)
	}
	a.mu.Lock()
	users := a.users
	if field == "updated_at" || desc {
		users = slices.Clone(users)
		if field == "updated_at" {
			slices.SortFunc(users, func(x, y apiUser) int {
				return cmp.Or(cmp.Compare(x.updated, y.updated), strings.Compare(x.id, y.id))
			})
		}
		if desc {
			slices.Reverse(users)
		}
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i := offset; i < min(offset+limit, len(users)); i++ {
		if i > offset {
			b.WriteByte(',')
		}
		b.Write(users[i].json)
	}
	b.WriteByte(']')
	a.mu.Unlock()
	writeJSON(w, b.Bytes())
}

func writeJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// clerkError answers an error in the shape of Clerk's.
func clerkError(w http.ResponseWriter, status int, code, message string) {
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message, "long_message": message}}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
