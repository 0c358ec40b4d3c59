// Package usersync keeps an application's own users table in step with an
// external identity provider: Clerk first, and any OpenID Connect issuer
// whose tokens carry iss and sub.
//
// # Two ways in, one row per person
//
// From the token: a request carries "Authorization: Bearer <JWT>". A
// Verifier checks it against the issuer's JWKS and its Middleware puts the
// resulting Identity in the request context; Syncer.StoreCurrentUser (or
// EnsureCurrent) upserts the user from it, and GetCurrent reads it back.
//
// From the provider: a WebhookHandler receives Clerk's Svix-signed
// user.created, user.updated and user.deleted events and upserts or
// deletes the same row. Webhook users are keyed issuer + "|" + Clerk user
// ID, the very key a token of that person gives (see TokenIdentifier), so
// both ways meet in one row with one ID.
//
// Behind both sits a Store: memstore keeps users in memory, sqlstore in
// SQLite, PostgreSQL or MySQL/MariaDB. Apps keep User.ID as the foreign key
// of their own tables and resolve many at once with Syncer.GetMany.
//
// # Write rules
//
// Webhooks are delivered at least once, retried for days and only roughly
// in order; tokens stay valid for a while after their user is deleted.
// usersync's writes therefore follow rules under which every arrival order
// converges to the same state:
//
//   - Every write carries a Version: the provider-side time of its data
//     (Clerk's updated_at for webhooks, the token's iat for tokens). Each
//     profile field keeps the version it was last written at, and a write
//     changes a field only when its version is newer. An equal or older
//     write is a no-op reported as Stale that returns the stored user, so
//     redelivered, duplicated and reordered events all end at the newest
//     data.
//   - Fields a write does not carry (a token without an email claim) never
//     wipe stored values. Because versions are kept per field, a partial
//     write (a token) and a full one (a webhook) merge the same way in
//     either order.
//   - Delete leaves a tombstone keyed by the token identifier: the ID stays
//     (so foreign keys stay valid), the personal fields are cleared, and
//     lookups report ErrNotFound. A tombstone is final: every later or late
//     write for its key reports ErrDeleted. Deleting a key never seen still
//     records the tombstone, so a user.created delivered after its
//     user.deleted cannot create the user. Deleting twice is harmless.
//   - Concurrent first writes of one key produce exactly one user with one
//     ID, and every caller gets that ID — in one process with memstore, and
//     across processes and replicas with sqlstore.
//
// usersynctest.TestStore checks every rule against any Store.
//
// # Tour
//
//	store := memstore.New()                  // or sqlstore.New(db, sqlstore.SQLite)
//	syncer := usersync.New(store)
//	verifier, _ := usersync.NewVerifier(ctx, usersync.VerifierConfig{
//		Issuers: []usersync.IssuerConfig{{Issuer: "https://example.clerk.accounts.dev"}},
//	})
//	defer verifier.Close()
//	webhook, _ := usersync.NewWebhookHandler(syncer, usersync.WebhookConfig{
//		Secrets: []string{os.Getenv("CLERK_WEBHOOK_SECRET")},
//		Issuer:  "https://example.clerk.accounts.dev",
//	})
//	mux := http.NewServeMux()
//	mux.Handle("POST /clerk-users-webhook", webhook)
//	mux.Handle("GET /api/me", verifier.RequireIdentity(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		user, err := syncer.EnsureCurrent(r.Context())
//		...
//	})))
package usersync
