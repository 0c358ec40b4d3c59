package usersync_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/usersync/usersync"
)

// instrumentations are the ways the telemetry benchmarks run: none (the
// instrumentation taken out), noop (no-op providers: what a library user
// who installs no SDK pays), global (the default: the global providers,
// with no SDK installed), sdk (the OpenTelemetry SDK, metrics to a manual
// reader, every span sampled and recorded; the calls outside any trace)
// and sdk-traced (the same, each call below a request's span, so that
// usersync's spans are made too).
var instrumentations = []string{"none", "noop", "global", "sdk", "sdk-traced"}

func providers(b *testing.B, kind string) (metric.MeterProvider, trace.TracerProvider) {
	switch kind {
	case "noop":
		return metricnoop.NewMeterProvider(), tracenoop.NewTracerProvider()
	case "sdk", "sdk-traced":
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		b.Cleanup(func() { mp.Shutdown(context.Background()); tp.Shutdown(context.Background()) })
		return mp, tp
	}
	return nil, nil // none and global
}

// traced returns a context with a request's span of tp when kind is
// sdk-traced, else context.Background().
func traced(b *testing.B, kind string, tp trace.TracerProvider) context.Context {
	if kind != "sdk-traced" {
		return context.Background()
	}
	ctx, span := tp.Tracer("bench").Start(context.Background(), "request")
	b.Cleanup(func() { span.End() })
	return ctx
}

// BenchmarkTelemetry compares the webhook handler's ServeHTTP across the
// instrumentations, in one run (jwtverify's BenchmarkTelemetry does the
// same for Verify).
func BenchmarkTelemetry(b *testing.B) {
	p := inHouse{secret: []byte("s3cret"), issuer: "https://id.example.com"}
	// Applied updates of 100 users, each delivery new: signed up front, so
	// that the loop times the handler alone (and a request to read).
	const deliveries = 1 << 14
	type delivery struct{ id, body, sig string }
	all := make([]delivery, deliveries)
	for i := range all {
		body := fmt.Sprintf(`{"type":"user.saved","id":"%d","name":"Ada %d","updated_at":%d}`, i%100, i, 1_700_000_000_000+i)
		all[i] = delivery{fmt.Sprint("d", i), body, p.mac(fmt.Sprint("d", i), []byte(body))}
	}
	for _, kind := range instrumentations {
		b.Run("Webhook/"+kind, func(b *testing.B) {
			if b.N > deliveries {
				b.Skipf("at most %d deliveries: use -benchtime %dx or less", deliveries, deliveries)
			}
			mp, tp := providers(b, kind)
			ctx := traced(b, kind, tp)
			h, err := usersync.NewWebhookHandler(newSyncer(b, nil, nil), p, usersync.WebhookConfig{Logger: quiet, MeterProvider: mp, TracerProvider: tp})
			if err != nil {
				b.Fatal(err)
			}
			if kind == "none" {
				usersync.DropWebhookTelemetry(h)
			}
			b.ReportAllocs()
			w := httptest.NewRecorder()
			for i := 0; b.Loop(); i++ {
				d := all[i]
				r := httptest.NewRequestWithContext(ctx, "POST", "/webhooks/in-house", strings.NewReader(d.body))
				r.Header.Set("X-Signature", d.sig)
				r.Header.Set("X-Delivery", d.id)
				w.Body.Reset()
				h.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}
