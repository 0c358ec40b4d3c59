package usersync_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry/telemetrytest"
)

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
	for _, kind := range telemetrytest.Instrumentations {
		b.Run("Webhook/"+kind, func(b *testing.B) {
			if b.N > deliveries {
				b.Skipf("at most %d deliveries: use -benchtime %dx or less", deliveries, deliveries)
			}
			mp, tp := telemetrytest.Providers(b, kind)
			ctx := telemetrytest.Traced(b, kind, tp)
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
