package usersync_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/usersynctest"
)

// A token verified with a key that a later refresh no longer lists (a
// rotation that removed it, or a revocation) stops verifying at once, not
// when it expires: the cache forgets it.
func TestCachedTokenOfARemovedKeyStopsVerifying(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *usersync.VerifierConfig) { c.RefreshInterval = 20 * time.Millisecond }, a)
	tok := a.Token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	for range 2 { // the second from the cache
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	a.Rotate() // the old keys are gone from the JWKS
	waitFetches(t, a, a.Fetches()+2)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, usersync.ErrBadSignature) {
		t.Fatalf("a token of a removed key: err = %v, want ErrBadSignature", err)
	}
	if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
}
