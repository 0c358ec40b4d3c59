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
	// Applied updates of 100 users, each delivery new: signed ahead, a
	// batch at a time with the timer stopped, so that the loop times the
	// handler alone (and a request to read).
	const batch = 1 << 14
	type delivery struct{ id, body, sig string }
	all := make([]delivery, batch)
	fill := func(from int) {
		for j := range all {
			i := from + j
			body := fmt.Sprintf(`{"type":"user.saved","id":"%d","name":"Ada %d","updated_at":%d}`, i%100, i, 1_700_000_000_000+i)
			all[j] = delivery{fmt.Sprint("d", i), body, p.mac(fmt.Sprint("d", i), []byte(body))}
		}
	}
	for _, kind := range telemetrytest.Instrumentations {
		b.Run("Webhook/"+kind, func(b *testing.B) {
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
			fill(0)
			for i := 0; b.Loop(); i++ {
				if i > 0 && i%batch == 0 {
					b.StopTimer()
					fill(i)
					b.StartTimer()
				}
				d := all[i%batch]
				r := httptest.NewRequestWithContext(ctx, "POST", "/webhooks/in-house", strings.NewReader(d.body))
				r.Header.Set("X-Signature", d.sig)
				r.Header.Set("X-Delivery", d.id)
				w.Body.Reset()
				h.ServeHTTP(w, r)
				// (A reused recorder keeps its first status: the body tells.)
				if !strings.Contains(w.Body.String(), `"updated"`) && !strings.Contains(w.Body.String(), `"created"`) {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}
