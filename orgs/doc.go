// Package orgs keeps the identity provider's organizations and their
// memberships in the application's database, beside its users, under the
// write rules users have: for multi-tenant apps that need to know, in
// their own tables, which organizations exist and who belongs to each, in
// what role.
//
// An Organization is keyed by its issuer and the provider's ID ("org_…"
// for Clerk), a Membership by its organization and its user (the user's
// subject, Clerk's user_id): so a webhook, a reconcile and a token's
// active-organization claim name one row. The rows come from the
// provider's webhooks (clerk) and its Backend API (reconcile); a token's
// claim never writes one: the store decides who is a member, not the
// claim, so a member removed a second ago is refused at once even though
// their token still names the organization.
//
// The write rules, which usersynctest.TestStore holds for every store
// that implements Store:
//
//   - Every write carries a version (the provider's updated_at), and
//     changes a row only if it is newer than the row's: retried,
//     duplicated and reordered deliveries converge.
//   - Deletes leave final tombstones: a late created or updated event of
//     a deleted organization or membership changes nothing.
//   - A membership may arrive before its organization and its user.
//     Deleting an organization or a user ends their memberships, in the
//     same transaction, and a membership write for a deleted organization
//     or user changes nothing.
//   - Clerk gives a member who leaves and joins again a new membership ID:
//     the membership created last (by the provider's created_at) holds the
//     row, so the old one's late events change nothing and the new one
//     revives the row even after the old one's delete.
//   - Concurrent first writes store one row.
//   - Times are kept to the millisecond.
//
// One exception, on a Galera cluster only: a membership written on one
// node at the very moment its organization or user is deleted on another
// can stay live, since Galera certifies the rows a transaction writes, not
// the rows it locks; its next delete or the next reconcile ends it.
//
// Every change reaches the store's change feed and Config.OnChange as a
// usersync.Change with Entity set, in order per organization and per
// membership.
//
// On the request path, RequireMember (behind usersync's RequireUser)
// admits the current user to an organization's routes only with a live
// stored membership, optionally in given roles, in one indexed read, and
// puts the organization and the membership in the context.
package orgs
