// Package usersync keeps an application's own users table in step with an
// external identity provider: Clerk first (package clerk), and any OpenID
// Connect issuer whose tokens carry iss and sub.
//
// # Two ways in, one row per person
//
// From the token: a request carries "Authorization: Bearer <JWT>" (or
// Clerk's __session cookie). An Extractor (package jwtverify's Verifier)
// checks it against its issuer's keys into an Identity. Behind Syncer.RequireUser, a handler finds the stored
// user in its context (UserFromContext); the middleware stores the user
// from the token first if the provider's webhook has not arrived yet.
//
// From the provider: a webhook handler (NewWebhookHandler with a Provider,
// such as clerk.New) receives signed user events and upserts or deletes
// the same row. Both ways find a person by TokenIdentifier(issuer, subject),
// so they meet in one row with one ID.
//
// Behind both sits a Store: memstore keeps users in memory, sqlstore in
// SQLite, PostgreSQL or MySQL/MariaDB. Apps keep User.ID as the foreign key
// of their own tables and resolve many at once with Store.GetMany.
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
//     lookups fail with ErrDeleted. A tombstone is final: every later or
//     late write for its token identifier fails with ErrDeleted too.
//     Deleting a token identifier never seen still records the tombstone,
//     so a user.created delivered after its user.deleted cannot create the
//     user. Deleting twice is harmless.
//   - Concurrent first writes of one token identifier produce exactly one
//     user with one ID, and every caller gets that ID — in one process with
//     memstore, and across processes and replicas with sqlstore.
//
// usersynctest.TestStore checks every rule against any Store.
//
// # Tour
//
//	syncer, webhook, err := clerk.Setup(ctx, store, clerk.SetupConfig{Config: clerk.Config{
//		Issuer:         "https://example.clerk.accounts.dev",
//		WebhookSecrets: []string{os.Getenv("CLERK_WEBHOOK_SECRET")},
//	}})
//	mux := http.NewServeMux()
//	mux.Handle("POST /clerk-users-webhook", webhook)
//	mux.Handle("GET /api/me", syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		user, _ := usersync.UserFromContext(r.Context())
//		json.NewEncoder(w).Encode(user)
//	})))
//
// Config.ErrorHandler maps every error of the middlewares to its HTTP
// status in one place: 401 for ErrNoToken and ErrInvalidToken (with an RFC
// 6750 challenge), 503 for ErrKeysUnavailable (with Retry-After), 403 for
// ErrDeleted and for a cross-site cookie request, 400 for ErrInvalid, 500
// otherwise.
package usersync
