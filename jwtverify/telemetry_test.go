package jwtverify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/usersynctest"
)

// TestVerifierTelemetry: verifications by result, cache hits and misses,
// JWKS fetches by issuer, and a span per verification the cache did not
// answer, a child of the caller's.
func TestVerifierTelemetry(t *testing.T) {
	rec := telemetrytest.New(t)
	iss := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.MeterProvider, c.TracerProvider = rec.MeterProvider, rec.TracerProvider
	}, iss)
	ctx, parent := rec.TracerProvider.Tracer("test").Start(context.Background(), "request")
	good := iss.Token(map[string]any{"sub": "user_1"})
	for range 3 {
		if _, err := v.Verify(ctx, good); err != nil {
			t.Fatal(err)
		}
	}
	expired := iss.Token(map[string]any{"sub": "user_1", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	stranger := usersynctest.NewIssuer(t).Token(map[string]any{"sub": "user_2"})
	for _, tok := range []string{expired, stranger, "", "not.a.token"} {
		if _, err := v.Verify(ctx, tok); err == nil {
			t.Fatal("a bad token verified")
		}
	}
	parent.End()

	const verifications = "usersync.token.verifications"
	for result, want := range map[string]int64{"ok": 1, "cached": 2, "expired": 1, "unknown_issuer": 1, "no_token": 1, "malformed": 1} {
		if got := rec.Sum(t, verifications, attribute.String("result", result)); got != want {
			t.Errorf("%s{result=%q} = %d, want %d", verifications, result, got, want)
		}
	}
	if got := rec.Sum(t, verifications); got != 7 {
		t.Errorf("%s = %d in all, want 7", verifications, got)
	}
	// The empty token is never looked up; the other five miss but one.
	if miss := rec.Sum(t, "usersync.token.cache.misses"); miss != 4 {
		t.Errorf("%d cache misses, want 4", miss)
	}
	if got := rec.Sum(t, "usersync.jwks.fetches", attribute.String("issuer", iss.URL), attribute.String("result", "ok")); got < 1 {
		t.Errorf("usersync.jwks.fetches{issuer, ok} = %d, want at least 1", got)
	}
	spans := rec.Spans("usersync.Verify")
	if len(spans) != 5 {
		t.Fatalf("%d usersync.Verify spans, want 5 (one per verification the cache did not answer)", len(spans))
	}
	results := map[string]int{}
	for _, s := range spans {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of the request's", s.Name())
		}
		r, _ := telemetrytest.Attr(s, "usersync.token.result")
		results[r.AsString()]++
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), "user_") {
				t.Errorf("span attribute %s carries a subject", kv.Key)
			}
		}
	}
	if results["ok"] != 1 || results["expired"] != 1 {
		t.Errorf("span results %v", results)
	}
	// Outside any trace: counted, but no root span.
	if _, err := v.Verify(context.Background(), expired); err == nil {
		t.Fatal("an expired token verified")
	}
	if n := len(rec.Spans("usersync.Verify")); n != 5 {
		t.Errorf("%d spans after a verification without a parent span, want still 5", n)
	}
	if got := rec.Sum(t, verifications, attribute.String("result", "expired")); got != 2 {
		t.Errorf("expired verifications %d, want 2", got)
	}
}

// BenchmarkTelemetry compares Verify (cache off, cache hit) across the
// instrumentations, in one run.
func BenchmarkTelemetry(b *testing.B) {
	iss := usersynctest.NewIssuer(b)
	token := iss.Token(map[string]any{"sub": "user_2abc", "name": "Ada Lovelace", "sid": "sess_123"})
	for _, cache := range []string{"cache-off", "cache-hit"} {
		for _, kind := range telemetrytest.Instrumentations {
			b.Run("Verify/"+cache+"/"+kind, func(b *testing.B) {
				mp, tp := telemetrytest.Providers(b, kind)
				ctx := telemetrytest.Traced(b, kind, tp)
				v := newVerifier(b, func(c *jwtverify.Config) {
					c.MeterProvider, c.TracerProvider = mp, tp
					if cache == "cache-off" {
						c.CacheSize = -1
					}
				}, iss)
				if kind == "none" {
					v.DropTelemetry()
				}
				if _, err := v.Verify(ctx, token); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(ctx, token); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
