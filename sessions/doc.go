// Package sessions refuses the tokens of sessions that have ended.
//
// A session token is verified without a network call, so a token minted
// before its session was signed out or revoked keeps passing until it
// expires (a Clerk session token lives 60 seconds; other issuers' often 5
// to 60 minutes). Package sessions closes that window: the provider's
// session.ended, session.removed and session.revoked webhooks (package
// clerk) and every deletion of a user record endings in the Store, which
// every replica shares; each replica's Set reads them into memory within
// Config.Poll (100 ms by default) and refuses the tokens of an ended
// session with usersync.ErrSessionEnded, answered 401. The check is a
// lookup in memory: no request pays a store read for it.
//
//	set, err := sessions.New(ctx, sessions.Config{Store: store})
//	syncer, err := usersync.New(usersync.Config{Store: store, Extractor: verifier, Sessions: set})
//
// A Set that cannot read the store for Config.MaxStale (1 s by default),
// that has not read it yet since it started, or that was closed, cannot
// tell an ended session from a live one: it refuses every identity with
// an error whose HTTPStatus is 503 (the middlewares add Retry-After) until
// it has caught up. An ending whose transaction committed after a later
// one's is read within a second, and every ending is read again every
// minute.
//
// An ending is kept for Config.Keep after the session ended (1 hour by
// default: set it to at least the longest lifetime of a token of the
// issuer, plus the verifier's leeway), then pruned: by then every token
// of the session has expired.
package sessions
