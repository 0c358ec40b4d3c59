package jwtverify

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry"
)

// verifierTelemetry is what a Verifier reports: a nil one reports nothing.
type verifierTelemetry struct {
	tracer        trace.Tracer
	verifications metric.Int64Counter // by result; a cache hit is result "cached"
	misses        metric.Int64Counter // of the cache
	jwks          metric.Int64Counter // by issuer and result
	results       map[string]telemetry.Attrs
	cachedAttrs   telemetry.Attrs // results["cached"], without the lookup
	none          telemetry.Attrs
	fetches       telemetry.Cache[jwksFetch]
}

type jwksFetch struct{ issuer, result string }

// tokenOutcome names the result of a verification that failed with err.
type tokenOutcome struct {
	err    error
	result string
}

// tokenResults are the values of the result label of
// usersync_token_verifications_total, by the error of a verification.
var tokenResults = []tokenOutcome{
	{usersync.ErrNoToken, "no_token"},
	{usersync.ErrSessionEnded, "session_ended"},
	{usersync.ErrKeysUnavailable, "keys_unavailable"},
	{errTooLarge, "too_large"},
	{errUnknownIssuer, "unknown_issuer"},
	{errBadSignature, "bad_signature"},
	{errExpired, "expired"},
	{errNotYetValid, "not_yet_valid"},
	{errAudience, "audience"},
	{errAuthorizedParty, "authorized_party"},
	{errNotAccepted, "not_accepted"},
	{errNoSession, "no_session"},
	{errMalformed, "malformed"},
}

// tokenResult returns the result label of a verification's error.
func tokenResult(err error) string {
	if err == nil {
		return "ok"
	}
	for _, r := range tokenResults {
		if errors.Is(err, r.err) {
			return r.result
		}
	}
	var unchecked interface{ HTTPStatus() int }
	if errors.As(err, &unchecked) && unchecked.HTTPStatus() == 503 {
		return "session_unchecked" // Config.Sessions cannot tell
	}
	return "invalid"
}

func newVerifierTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) *verifierTelemetry {
	m := telemetry.Meter(mp)
	t := &verifierTelemetry{
		tracer:        telemetry.Tracer(tp),
		verifications: telemetry.Counter(m, "usersync.token.verifications", "Bearer tokens verified, by result: ok, cached (a verified token seen again) or why it was refused.", "{token}"),
		misses:        telemetry.Counter(m, "usersync.token.cache.misses", "Lookups of the verified-token cache that found nothing; its hits are the verifications with result cached.", "{request}"),
		jwks:          telemetry.Counter(m, "usersync.jwks.fetches", "Fetches of an issuer's JWKS, by issuer and result: ok or error.", "{fetch}"),
		results:       map[string]telemetry.Attrs{},
		none:          telemetry.NewAttrs(),
	}
	for _, r := range append(tokenResults, tokenOutcome{result: "ok"}, tokenOutcome{result: "cached"}, tokenOutcome{result: "invalid"}, tokenOutcome{result: "session_unchecked"}) {
		t.results[r.result] = telemetry.NewAttrs(attribute.String("result", r.result))
	}
	t.cachedAttrs = t.results["cached"]
	t.fetches = telemetry.Cache[jwksFetch]{
		Max:      64,
		Overflow: jwksFetch{"other", "other"},
		New: func(f jwksFetch) telemetry.Attrs {
			return telemetry.NewAttrs(attribute.String("issuer", f.issuer), attribute.String("result", f.result))
		},
	}
	return t
}

// cached counts a verification answered from the cache: a cache hit. It
// records one measurement and starts no span, so that a hit costs next to
// nothing more (a span would cost more than the hit).
func (t *verifierTelemetry) cached(ctx context.Context) {
	if t != nil {
		t.verifications.Add(ctx, 1, t.cachedAttrs.Add...)
	}
}

// refused counts a cached token that Config.Sessions refused.
func (t *verifierTelemetry) refused(ctx context.Context, err error) {
	if t != nil {
		t.verifications.Add(ctx, 1, t.results[tokenResult(err)].Add...)
	}
}

// missed counts a lookup of the cache that found nothing.
func (t *verifierTelemetry) missed(ctx context.Context) {
	if t != nil {
		t.misses.Add(ctx, 1, t.none.Add...)
	}
}

// start starts the span of a verification, below the caller's span: a
// verification outside any trace (no span in ctx) gets none, as a root
// span per request would be noise, and costs allocations.
func (t *verifierTelemetry) start(ctx context.Context) (context.Context, trace.Span) {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	return t.tracer.Start(ctx, "usersync.Verify")
}

// verified counts a verification and ends its span.
func (t *verifierTelemetry) verified(ctx context.Context, span trace.Span, err error) {
	if t == nil {
		return
	}
	result := tokenResult(err)
	t.verifications.Add(ctx, 1, t.results[result].Add...)
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("usersync.token.result", result))
		if err != nil {
			span.SetStatus(codes.Error, result)
		}
	}
	span.End()
}

// fetched counts a JWKS fetch.
func (t *verifierTelemetry) fetched(issuer string, err error) {
	if t == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	t.jwks.Add(context.Background(), 1, t.fetches.Get(jwksFetch{issuer, result}).Add...)
}
