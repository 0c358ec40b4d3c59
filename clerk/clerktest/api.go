package clerktest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerkfake"
)

// API is a fake of the user list of Clerk's Backend API, served by an
// httptest.Server that closes when the test ends: a clerkfake.Instance
// (Fake), whose doc comment says what it serves:
//
//   - GET /users?limit=&offset=&order_by= answers a JSON array of users:
//     limit 1 to 500 (default 10), offset 0 or more, order_by created_at or
//     updated_at, prefixed "+" (ascending) or "-" (descending, and the
//     default: -created_at), ties broken by ID;
//   - GET /users/count answers {"object":"total_count","total_count":N};
//   - GET /users/{id} answers the user, or 404;
//   - GET /jwks answers the instance's signing keys, a JWKS;
//   - GET /organizations, /organizations/{id} and
//     /organizations/{id}/memberships serve the organizations that
//     Fake.PutOrganization and Fake.PutMembership list;
//   - GET /sessions/{id} answers the session of a token Fake minted
//     (Fake.Token, Fake.SessionToken), or 404.
//
// The server also serves the instance's Frontend API JWKS, without a
// secret key, at JWKSURL. The instance has an RS256 key of its own
// (PublicKeyPEM), or the keys SetJWKS gives it.
//
// Every other request needs "Authorization: Bearer " + SecretKey (else 401);
// bad parameters answer 422, as Clerk does.
type API struct {
	// URL is the base URL, for clerk.Config.APIURL.
	URL string
	// SecretKey is the key requests must carry, for clerk.Config.SecretKey.
	SecretKey string
	// JWKSURL serves the instance's signing keys as its Frontend API does,
	// for clerk.Config.JWKSURL.
	JWKSURL string
	// Fake is the instance: its issuer (Fake.Issuer(), the server's URL)
	// mints session tokens (Fake.Token) and sends webhooks (Fake.Send).
	Fake *clerkfake.Instance
}

// NewAPI starts an empty fake API with a random secret key.
func NewAPI(t testing.TB) *API {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	fake, err := clerkfake.New(clerkfake.Config{Issuer: "http://" + srv.Listener.Addr().String()})
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	srv.Config.Handler = fake
	srv.Start()
	t.Cleanup(srv.Close)
	return &API{URL: fake.APIURL(), SecretKey: fake.SecretKey(), JWKSURL: fake.JWKSURL(), Fake: fake}
}

// SetJWKS makes the instance's signing keys those of jwks (a JWKS, as an
// issuer under test serves it), so that a secret key of this API belongs
// to that issuer.
func (a *API) SetJWKS(jwks []byte) { a.Fake.SetJWKS(jwks) }

// PublicKeyPEM returns the instance's own RS256 public key in PEM form, as
// Clerk's dashboard shows it, for clerk.Config.PublicKeyPEM. It panics
// after SetJWKS.
func (a *API) PublicKeyPEM() string {
	pem, err := a.Fake.PublicKeyPEM()
	if err != nil {
		panic("clerktest: PublicKeyPEM of an API whose keys SetJWKS gave")
	}
	return pem
}

// Put adds users, or replaces those with the same ID (keeping their place
// in the created_at order, as Clerk never changes created_at).
func (a *API) Put(users ...User) { a.Fake.Put(users...) }

// Remove deletes the users with the given IDs, as deleting them in Clerk
// does. Unknown IDs are ignored.
func (a *API) Remove(ids ...string) { a.Fake.Remove(ids...) }

// Fail makes the next n requests fail with status; a 429 carries
// Retry-After: retryAfter, in whole seconds, as Clerk sends it (none if
// retryAfter is negative).
func (a *API) Fail(n, status int, retryAfter time.Duration) { a.Fake.Fail(n, status, retryAfter) }

// OnPage sets a function called before each page of GET /users is served,
// with its offset: a test changes the list there, as users who sign up or
// are deleted while a sweep pages do.
func (a *API) OnPage(f func(offset int)) { a.Fake.OnPage(f) }

// Requests returns how many requests the Backend API has answered, failed
// ones included.
func (a *API) Requests() int { return a.Fake.Requests() }

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.Fake.ServeHTTP(w, r) }
