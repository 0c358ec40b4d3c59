package clerk

import (
	"context"
	"net/http"

	"github.com/usersync/usersync"
)

// Setup wires usersync for one Clerk instance in one call: a Syncer over
// store whose verifier trusts the instance's session tokens (so that its
// RequireUser and LoadUser work), and the handler of the instance's
// webhooks. The verifier's key refreshes end with ctx; every part logs to
// cfg.Logger.
//
// For any other setting, build the parts yourself: New, then
// usersync.NewVerifier with Provider.Issuer, usersync.New and
// usersync.NewWebhookHandler.
func Setup(ctx context.Context, store usersync.Store, cfg Config) (*usersync.Syncer, http.Handler, error) {
	logger := cfg.Logger
	p, err := New(cfg)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := usersync.NewVerifier(ctx, usersync.VerifierConfig{Issuers: []usersync.Issuer{p.Issuer()}, Logger: logger,
		MeterProvider: cfg.MeterProvider, TracerProvider: cfg.TracerProvider})
	if err != nil {
		return nil, nil, err
	}
	syncer, err := usersync.New(usersync.Config{Store: store, Verifier: verifier, Logger: logger})
	if err != nil {
		verifier.Close()
		return nil, nil, err
	}
	webhook, err := usersync.NewWebhookHandler(syncer, p, usersync.WebhookConfig{Logger: logger,
		MeterProvider: cfg.MeterProvider, TracerProvider: cfg.TracerProvider})
	if err != nil {
		verifier.Close()
		return nil, nil, err
	}
	return syncer, webhook, nil
}
