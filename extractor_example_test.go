package usersync_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

// gatewayIdentity trusts the subject an API gateway in front of the app
// has authenticated and put in a header: an Extractor other than a JWT
// verifier. (Trust such a header only behind a gateway that sets it on
// every request.)
type gatewayIdentity struct{ issuer string }

func (g gatewayIdentity) Identify(r *http.Request) (*usersync.Identity, error) {
	sub := r.Header.Get("X-Authenticated-User")
	if sub == "" {
		return nil, usersync.ErrNoToken
	}
	return &usersync.Identity{Issuer: g.issuer, Subject: sub, TokenIdentifier: usersync.TokenIdentifier(g.issuer, sub)}, nil
}

// Any Extractor serves RequireUser, LoadUser and RequireIdentity, with
// the same error table.
func ExampleExtractor() {
	syncer, _ := usersync.New(usersync.Config{Store: memstore.New(), Extractor: gatewayIdentity{"https://gateway.example.com"}})
	h := syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := usersync.UserFromContext(r.Context())
		fmt.Fprintln(w, "hello", user.Name)
	}))
	for _, sub := range []string{"", "user_2abc"} {
		r := httptest.NewRequest("GET", "/api/me", nil)
		if sub != "" {
			r.Header.Set("X-Authenticated-User", sub)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	// Output:
	// 401 unauthorized
	// 200 hello Anonymous
}
