package usersync

import "context"

// The reasons a token is invalid, each wrapping ErrInvalidToken: exported
// to the tests of package usersync_test only, so that they can tell one
// reason from another with errors.Is.
var (
	ErrTokenTooLarge        = errTooLarge
	ErrMalformedToken       = errMalformed
	ErrUnknownIssuer        = errUnknownIssuer
	ErrBadSignature         = errBadSignature
	ErrTokenExpired         = errExpired
	ErrTokenNotYetValid     = errNotYetValid
	ErrWrongAudience        = errAudience
	ErrWrongAuthorizedParty = errAuthorizedParty
	ErrClaimsNotAccepted    = errNotAccepted
	ErrNotASessionToken     = errNoSession
)

// NewContext returns a copy of ctx that carries id, as the middlewares do.
func NewContext(ctx context.Context, id *Identity) context.Context { return newContext(ctx, id) }

// DropTelemetry turns the verifier's instrumentation off entirely, for the
// benchmarks that compare it with none.
func (v *Verifier) DropTelemetry() {
	v.tel = nil
	for _, k := range v.issuers {
		k.tel = nil
	}
}

// DropWebhookTelemetry turns a webhook handler's instrumentation off.
func DropWebhookTelemetry(h any) { h.(*webhookHandler).tel = nil }
