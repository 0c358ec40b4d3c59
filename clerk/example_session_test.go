package clerk_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/sessions"
)

// Guard a sensitive route with the strict mode: it asks Clerk's Backend
// API whether the session is still active, so that a session signed out
// or revoked a second ago is refused though its token is still valid and
// its webhook has not come (or never will). A session Clerk reports as
// ended is recorded in App.Sessions: every route of every replica
// refuses it from then on, without asking.
func ExampleSessionStatus() {
	// A fake Clerk instance stands in for yours.
	srv := httptest.NewUnstartedServer(nil)
	fake, err := clerkfake.New(clerkfake.Config{Issuer: "http://" + srv.Listener.Addr().String()})
	if err != nil {
		panic(err)
	}
	srv.Config.Handler = fake
	srv.Start()
	defer srv.Close()

	app, err := clerk.Wire(context.Background(), memstore.New(), clerk.SetupConfig{
		Config: clerk.Config{
			Issuer:    fake.Issuer(),    // your Frontend API URL
			SecretKey: fake.SecretKey(), // CLERK_SECRET_KEY: strict mode needs it
			APIURL:    fake.APIURL(),    // leave empty for Clerk's
		},
		EndedSessions: sessions.Config{MaxStale: 5 * time.Second}, // how long a replica trusts the endings it read
		// The longest a strict request waits for Clerk (default 2 s), and
		// the most calls a second it makes (default 10).
		SessionStatus: clerk.SessionStatusConfig{MaxWait: 10 * time.Second, MaxCallsPerSecond: 10},
		Logger:        quiet,
	})
	if err != nil {
		panic(err)
	}
	defer app.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /api/me", app.Syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "me")
	})))
	mux.Handle("POST /api/transfer", app.Syncer.RequireUser(app.SessionStatus.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "transferred")
	}))))
	do := func(method, path, token string) {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Println(method, path, w.Code, strings.TrimSpace(w.Body.String()))
		if c := w.Header().Get("WWW-Authenticate"); c != "" {
			fmt.Println("\t" + c)
		}
	}

	laptop, _ := fake.SessionToken("user_ada", "sess_laptop", nil)
	phone, _ := fake.SessionToken("user_ada", "sess_phone", nil)
	do("POST", "/api/transfer", laptop)

	// Ada revokes her phone's session from her laptop; its webhook is
	// not here yet.
	fake.SetSessionStatus("sess_phone", "revoked")
	do("GET", "/api/me", phone) // not strict: the token is still valid
	do("POST", "/api/transfer", phone)
	do("GET", "/api/me", phone) // recorded: refused everywhere now
	// Output:
	// POST /api/transfer 200 transferred
	// GET /api/me 200 me
	// POST /api/transfer 401 unauthorized
	// 	Bearer realm="usersync", error="invalid_token", error_description="session ended"
	// GET /api/me 401 unauthorized
	// 	Bearer realm="usersync", error="invalid_token", error_description="session ended"
}
