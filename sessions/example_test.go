package sessions_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
)

// A Set refuses the tokens of a session once any replica has recorded its
// ending (as package clerk's webhook does for session.revoked), and the
// tokens of the user's other sessions go on.
func Example() {
	ctx := context.Background()
	store := memstore.New() // or the app's sqlstore, shared by every replica
	set, err := sessions.New(ctx, sessions.Config{Store: store})
	if err != nil {
		panic(err)
	}
	defer set.Close()

	if err := set.End(ctx, sessions.Ending{Issuer: "https://example.clerk.accounts.dev", SessionID: "sess_revoked", Subject: "user_ada"}); err != nil {
		panic(err)
	}
	for _, sid := range []string{"sess_revoked", "sess_phone"} {
		id := &usersync.Identity{Issuer: "https://example.clerk.accounts.dev", Subject: "user_ada", SessionID: sid}
		err := set.CheckSession(id)
		fmt.Printf("%s: ended %v\n", sid, errors.Is(err, usersync.ErrSessionEnded))
	}
	// Output:
	// sess_revoked: ended true
	// sess_phone: ended false
}

// With the Set as usersync.Config.Sessions, RequireUser, RequireIdentity
// and LoadUser refuse an ended session's token, whatever the extractor.
func Example_middleware() {
	ctx := context.Background()
	store := memstore.New()
	set, err := sessions.New(ctx, sessions.Config{Store: store})
	if err != nil {
		panic(err)
	}
	defer set.Close()
	// Any extractor: here, one that trusts a header (a gateway's).
	gateway := extractorFunc(func(r *http.Request) (*usersync.Identity, error) {
		return &usersync.Identity{Issuer: "https://gateway.test", Subject: "ada", TokenIdentifier: "https://gateway.test|ada", SessionID: r.Header.Get("X-Session")}, nil
	})
	syncer, err := usersync.New(usersync.Config{Store: store, Extractor: gateway, Sessions: set})
	if err != nil {
		panic(err)
	}
	h := syncer.RequireIdentity(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	if err := set.End(ctx, sessions.Ending{Issuer: "https://gateway.test", SessionID: "s1"}); err != nil {
		panic(err)
	}
	for _, sid := range []string{"s1", "s2"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Session", sid)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(sid, w.Code, w.Header().Get("WWW-Authenticate"))
	}
	// Output:
	// s1 401 Bearer realm="usersync", error="invalid_token", error_description="session ended"
	// s2 200
}

// extractorFunc is an Extractor of a function.
type extractorFunc func(*http.Request) (*usersync.Identity, error)

func (f extractorFunc) Identify(r *http.Request) (*usersync.Identity, error) { return f(r) }
