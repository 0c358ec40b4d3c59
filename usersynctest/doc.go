// Package usersynctest provides utilities for testing code that uses
// usersync, in the spirit of net/http/httptest: a Store conformance suite,
// a fake token issuer and a signed webhook sender. It is meant for tests
// only; its helpers fail the test (t.Fatal) instead of returning errors.
package usersynctest
