// Package usersynctest provides utilities for testing code that uses
// usersync, in the spirit of net/http/httptest:
//   - TestStore, the conformance suite every Store runs, with the rules of
//     the change feed, leases, organizations and ended sessions for a
//     store that keeps them;
//   - Stream, Fold and CompareState: a random stream of versioned writes
//     and the state every store must reach from it;
//   - Issuer, a fake OpenID Connect issuer that serves a JWKS and signs
//     tokens;
//   - WaitForConsumer, which waits until a feed consumer has caught up.
//
// The fakes of Clerk (its webhook sender and Backend API) are in package
// clerk/clerktest, and in clerk/clerkfake for programs that are not tests.
// usersynctest is meant for tests only: its helpers fail the test
// (t.Fatal) instead of returning errors.
package usersynctest
