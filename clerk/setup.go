package clerk

import (
	"context"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
)

// SetupConfig is what Setup wires: the instance (Config) and the settings
// of the parts Setup builds around it, which the Provider itself never
// reads. Every field but Config.Issuer has the default its comment gives.
type SetupConfig struct {
	// Config describes the instance.
	Config
	// Logger is the logger of every part. Default slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes the error responses of the Syncer's
	// middlewares: see usersync.Config.ErrorHandler.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// MeterProvider and TracerProvider receive the metrics and spans of
	// the verifier and the webhook handler (see jwtverify.Config and
	// usersync.WebhookConfig). Default: the global providers of
	// go.opentelemetry.io/otel.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// Setup wires usersync for one Clerk instance in one call: a Syncer over
// store whose extractor, a jwtverify.Verifier, trusts the instance's
// session tokens (so that its RequireUser and LoadUser work), and the
// handler of the instance's webhooks. The verifier's key refreshes end
// with ctx.
//
// For any other setting, build the parts yourself: New, then
// jwtverify.New with Provider.Issuer, usersync.New and
// usersync.NewWebhookHandler.
func Setup(ctx context.Context, store usersync.Store, cfg SetupConfig) (*usersync.Syncer, http.Handler, error) {
	p, err := New(cfg.Config)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := jwtverify.New(ctx, jwtverify.Config{Issuers: []jwtverify.Issuer{p.Issuer()}, Logger: cfg.Logger,
		MeterProvider: cfg.MeterProvider, TracerProvider: cfg.TracerProvider})
	if err != nil {
		return nil, nil, err
	}
	syncer, err := usersync.New(usersync.Config{Store: store, Extractor: verifier, ErrorHandler: cfg.ErrorHandler, Logger: cfg.Logger})
	if err != nil {
		verifier.Close()
		return nil, nil, err
	}
	webhook, err := usersync.NewWebhookHandler(syncer, p, usersync.WebhookConfig{Logger: cfg.Logger,
		MeterProvider: cfg.MeterProvider, TracerProvider: cfg.TracerProvider})
	if err != nil {
		verifier.Close()
		return nil, nil, err
	}
	return syncer, webhook, nil
}
