package jwtverify

// The reasons a token is invalid, each wrapping usersync.ErrInvalidToken:
// exported to the tests of package jwtverify_test only, so that they can
// tell one reason from another with errors.Is.
var (
	ErrTokenTooLarge        = errTooLarge
	ErrMalformedToken       = errMalformed
	ErrUnknownIssuer        = errUnknownIssuer
	ErrBadSignature         = errBadSignature
	ErrTokenNotYetValid     = errNotYetValid
	ErrWrongAudience        = errAudience
	ErrWrongAuthorizedParty = errAuthorizedParty
	ErrClaimsNotAccepted    = errNotAccepted
	ErrNotASessionToken     = errNoSession
)

// DropTelemetry turns the verifier's instrumentation off entirely, for the
// benchmarks that compare it with none.
func (v *Verifier) DropTelemetry() {
	v.tel = nil
	for _, k := range v.issuers {
		k.tel = nil
	}
}
