package clerk

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"

	"github.com/usersync/usersync/internal/pubkey"
)

// ErrWrongInstance reports a secret key of another Clerk instance than the
// one Config.Issuer names: the instance's signing keys, which the Backend
// API serves for the secret key, are none of the issuer's. A reconcile with
// such a key would import another instance's users and find the real ones
// missing.
var ErrWrongInstance = errors.New("clerk: the secret key belongs to another instance than the issuer")

// maxJWKSSize bounds a JWKS read by the instance check.
const maxJWKSSize = 1 << 20

// checkInstance checks, before the first request of the list, that the
// secret key is the issuer's instance's: one of the keys the Backend API
// serves (GET /jwks) must be one of the issuer's (its PublicKeyPEM, or its
// JWKS). A success is kept for the life of the list; a failure is checked
// again on the next call.
func (l *backend) checkInstance(ctx context.Context) error {
	if l.checked.Load() {
		return nil
	}
	select {
	case l.checking <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: checking that the secret key is the issuer's instance's: %w", ErrAPI, ctx.Err())
	}
	defer func() { <-l.checking }()
	if l.checked.Load() {
		return nil
	}
	issuer := l.issuer
	theirs, theirKids, err := l.issuerKeys(ctx)
	if err != nil {
		return fmt.Errorf("clerk: fetching the keys of the issuer %s, to check that the secret key is its instance's: %w", issuer, err)
	}
	body, err := l.get(ctx, "/jwks")
	if err != nil {
		return err
	}
	ours, err := pubkey.ParseJWKS(body)
	if err != nil {
		return fmt.Errorf("%w: /jwks: %w", ErrAPI, err)
	}
	for _, k := range ours {
		for _, t := range theirs {
			if pubkey.Equal(k.Public, t) {
				l.checked.Store(true)
				return nil
			}
		}
	}
	kids := make([]string, 0, len(ours))
	for _, k := range ours {
		kids = append(kids, k.KID)
	}
	return fmt.Errorf("%w: none of the signing keys of the secret key's instance (kid %s, from the Backend API) is a key of the issuer %s (%s): use the secret key of the issuer's instance",
		ErrWrongInstance, listKids(kids), issuer, theirKids)
}

// issuerKeys returns the issuer's keys: its PEM key, or those of its JWKS,
// and a description of them for an error.
func (l *backend) issuerKeys(ctx context.Context) ([]crypto.PublicKey, string, error) {
	if l.pem != nil {
		return []crypto.PublicKey{l.pem}, "its PublicKeyPEM", nil
	}
	keys, err := pubkey.FetchJWKS(ctx, l.client, l.jwksURL, maxJWKSSize)
	if err != nil {
		return nil, "", err
	}
	out := make([]crypto.PublicKey, len(keys))
	kids := make([]string, len(keys))
	for i, k := range keys {
		out[i], kids[i] = k.Public, k.KID
	}
	return out, "kid " + listKids(kids), nil
}

// listKids lists at most five kids, each cut to 64 bytes, for an error.
func listKids(kids []string) string {
	if len(kids) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, kid := range kids[:min(len(kids), 5)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", kid[:min(len(kid), 64)])
	}
	if len(kids) > 5 {
		fmt.Fprintf(&b, " and %d more", len(kids)-5)
	}
	return b.String()
}
