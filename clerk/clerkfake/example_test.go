package clerkfake_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/jwtverify"
)

// A fake instance served on loopback, without a *testing.T: its users
// listed by the Backend API, and a session token verified as Clerk's.
func Example() {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fake, err := clerkfake.New(clerkfake.Config{Issuer: "http://" + ln.Addr().String()})
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: fake}
	go srv.Serve(ln)
	defer srv.Close()
	if err := fake.PutJSON([]byte(`[{"id": "user_ada", "first_name": "Ada", "last_name": "Lovelace"}]`)); err != nil {
		log.Fatal(err)
	}

	instance, err := clerk.New(clerk.Config{Issuer: fake.Issuer(), SecretKey: fake.SecretKey(), APIURL: fake.APIURL()})
	if err != nil {
		log.Fatal(err)
	}
	list, err := instance.UserList()
	if err != nil {
		log.Fatal(err)
	}
	ada, err := list.Lookup(ctx, "user_ada")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listed:", ada.Profile.Name)

	token, err := fake.Token("user_ada", nil)
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := jwtverify.New(ctx, jwtverify.Config{Issuers: []jwtverify.Issuer{instance.Issuer()}})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()
	id, err := verifier.Verify(ctx, token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed in:", id.Subject)
	// Output:
	// listed: Ada Lovelace
	// signed in: user_ada
}
