// Package clerk connects usersync to Clerk: Clerk's Svix-signed user.*
// webhooks (and, with an orgs.Syncer, its organization.* and
// organizationMembership.* ones; with a sessions.Set, its session.ended,
// session.removed and session.revoked ones) as a usersync.Provider, the
// typed payloads, the default mapping of a Clerk user to a usersync
// profile and of its organizations and memberships to package orgs' rows,
// the Backend API's user and organization lists, a strict mode that asks
// it whether a session is still active (SessionStatus), and Wire, which
// wires all of usersync for one instance and runs its background work:
//
//	app, err := clerk.Wire(ctx, store, clerk.SetupConfig{Config: clerk.Config{
//		Issuer:         "https://your-app.clerk.accounts.dev", // the Frontend API URL
//		WebhookSecrets: []string{os.Getenv("CLERK_WEBHOOK_SECRET")},
//		SecretKey:      os.Getenv("CLERK_SECRET_KEY"), // optional: complete token-only users
//	}})
//	mux.Handle("POST /clerk-users-webhook", app.Webhook)
//	mux.Handle("GET /api/me", app.Syncer.RequireUser(handler))
//	mux.Handle("POST /api/transfer", app.Syncer.RequireUser(app.SessionStatus.Require(transfer))) // strict: needs the SecretKey
//	go srv.Serve(ln)
//	err = app.Run(ctx) // the change feed, reconciles, completions, key refreshes
//
// One Config holds what describes a Clerk instance, so that its issuer is
// written once. By hand, the parts are:
//
//	instance, err := clerk.New(clerk.Config{
//		Issuer:         "https://your-app.clerk.accounts.dev", // the Frontend API URL
//		WebhookSecrets: []string{os.Getenv("CLERK_WEBHOOK_SECRET")},
//	})
//	verifier, err := jwtverify.New(ctx, jwtverify.Config{Issuers: []jwtverify.Issuer{instance.Issuer()}})
//	syncer, err := usersync.New(usersync.Config{Store: store, Extractor: verifier})
//	webhook, err := usersync.NewWebhookHandler(syncer, instance, usersync.WebhookConfig{})
//	mux.Handle("POST /clerk-users-webhook", webhook)
//
// Webhook users are keyed usersync.TokenIdentifier(Issuer, Clerk user ID):
// the key a session token of the same person gives, so both ways in meet in
// one row.
package clerk

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/internal/telemetry"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sessions"
)

// Config describes a Clerk instance. Issuer is required; every other field
// has the default its comment gives.
type Config struct {
	// Issuer is the instance's Frontend API URL, the iss of its session
	// tokens: "https://<slug>.clerk.accounts.dev" in development,
	// "https://clerk.<your-domain>" in production.
	Issuer string
	// JWKSURL serves the instance's signing keys. Default: Issuer +
	// "/.well-known/jwks.json".
	JWKSURL string
	// PublicKeyPEM, if set, is the instance's "JWT public key" (Clerk's
	// CLERK_JWT_KEY): tokens are checked against it with no network call.
	PublicKeyPEM string
	// AuthorizedParties are your app's origins, checked against the azp of
	// session tokens (Clerk recommends it against CSRF). Default: none.
	AuthorizedParties []string
	// Audiences, if set, are the accepted aud values of tokens. Clerk
	// session tokens carry none; set it for JWT-template tokens with one.
	Audiences []string
	// InsecureAcceptJWTTemplates accepts tokens without a session ID (sid):
	// tokens of Clerk's JWT templates, whose claims may come from metadata
	// the user can edit (unsafe_metadata), and that a signed-in user can
	// mint from the browser. By default only session tokens are accepted.
	InsecureAcceptJWTTemplates bool
	// MetadataClaim, if set, names a claim of your customised session token
	// whose JSON value is stored as the profile's metadata, as webhooks
	// store public_metadata: with the session token customised to
	// {"metadata": "{{user.public_metadata}}"}, set it to "metadata".
	MetadataClaim string
	// WebhookSecrets are the Svix signing secrets ("whsec_...") of the
	// instance's webhook endpoint. A delivery signed with any of them is
	// accepted: list the old and the new one while rotating. Without one,
	// every delivery fails to verify.
	WebhookSecrets []string
	// SecretKey is the instance's secret key (sk_live_... or sk_test_...,
	// CLERK_SECRET_KEY in Clerk's SDKs), for the Backend API: UserList
	// and OrganizationList, and so reconcile. Without one there is neither.
	SecretKey string
	// APIURL is the Backend API's base URL. Default DefaultAPIURL.
	APIURL string
	// HTTPClient makes the Backend API's requests. Default: a client with
	// a 30 s timeout.
	HTTPClient *http.Client
	// Tolerance is how far a delivery's svix-timestamp may be from now,
	// either way. Default 5 minutes.
	Tolerance time.Duration
	// MapUser turns a Clerk user into the profile to store, and says which
	// fields it carries. Default Profile.
	MapUser func(*User) (usersync.Profile, usersync.Fields)
	// Now is the clock of the timestamp check. Default time.Now.
	Now func() time.Time
	// Organizations, if set, applies the organization.* and
	// organizationMembership.* webhooks: Decode turns them into events
	// whose Apply writes them through it, versioned by their updated_at
	// (see package orgs). Without it they are events about something
	// else, for usersync.WebhookConfig.OnEvent, as are the
	// organizationInvitation.* ones either way. Wire sets it when its
	// store implements orgs.Store.
	Organizations *orgs.Syncer
	// Sessions, if set, applies the session.ended, session.removed and
	// session.revoked webhooks: Decode turns them into events whose Apply
	// records the ending in it (Set.End), so that every replica refuses
	// the session's tokens from then on. Without it they are events about
	// something else, for usersync.WebhookConfig.OnEvent, as are
	// session.created and the other session.* events either way. Wire
	// sets it when its store implements sessions.Store. Without it, the
	// first such event is logged (Info, once per Provider): their
	// sessions' tokens pass until they expire.
	Sessions *sessions.Set
	// Logger logs what the Provider notices of the deliveries it decodes,
	// never an ID: the session endings it does not record (Sessions).
	// Default slog.Default(). Wire sets it to SetupConfig.Logger where nil.
	Logger *slog.Logger
}

// Provider is a Clerk instance: the usersync.Provider of its webhooks, and
// the jwtverify.Issuer of its session tokens. It is safe for concurrent use.
type Provider struct {
	cfg       Config
	webhooks  []*svix.Webhook
	secretKey string
	backend   func() (*backend, error) // the Backend API client of its lists, made once
	log       *slog.Logger
	// endingsIgnored is set once a session ending has been logged as not
	// recorded (no Config.Sessions).
	endingsIgnored *atomic.Bool
}

var _ usersync.Provider = (*Provider)(nil)

// New returns the Provider of cfg. An empty issuer, or an empty or
// malformed secret, is an error wrapping usersync.ErrInvalid; errors never
// contain a secret.
func New(cfg Config) (*Provider, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("%w: clerk.Config needs the Issuer (the instance's Frontend API URL)", usersync.ErrInvalid)
	}
	p := &Provider{cfg: cfg}
	for i, secret := range cfg.WebhookSecrets {
		wh, err := newSvixWebhook(secret)
		if err != nil {
			return nil, fmt.Errorf("%w: webhook secret #%d: %w", usersync.ErrInvalid, i+1, err)
		}
		p.webhooks = append(p.webhooks, wh)
	}
	// The secrets are kept only inside the verifiers and an unexported
	// field, out of any %v of the config.
	p.cfg.WebhookSecrets = nil
	p.secretKey, p.cfg.SecretKey = cfg.SecretKey, ""
	if p.cfg.Tolerance == 0 {
		p.cfg.Tolerance = 5 * time.Minute
	}
	if p.cfg.MapUser == nil {
		p.cfg.MapUser = Profile
	}
	if p.cfg.Now == nil {
		p.cfg.Now = time.Now
	}
	p.backend = sync.OnceValues(p.newBackend)
	p.log, p.endingsIgnored = telemetry.Logger(cfg.Logger), new(atomic.Bool)
	return p, nil
}

// Issuer returns the instance as a trusted token issuer, for
// jwtverify.Config.
func (p *Provider) Issuer() jwtverify.Issuer {
	return jwtverify.Issuer{
		URL:               p.cfg.Issuer,
		JWKSURL:           p.cfg.JWKSURL,
		PublicKeyPEM:      p.cfg.PublicKeyPEM,
		AuthorizedParties: p.cfg.AuthorizedParties,
		Audiences:         p.cfg.Audiences,
		MetadataClaim:     p.cfg.MetadataClaim,
		RequireSessionID:  !p.cfg.InsecureAcceptJWTTemplates,
	}
}
