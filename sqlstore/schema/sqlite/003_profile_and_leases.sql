-- Version 3: given and family names beside the display name, the external
-- ID (the person's ID in an earlier system: indexed, for a lookup by it)
-- and the time of the last sign-in, each with the version of its own.
-- SQLite keeps times as Unix milliseconds (created_at, updated_at,
-- deleted_at, last_sign_in_at).
ALTER TABLE {{table}} ADD COLUMN given_name TEXT NOT NULL DEFAULT '';
ALTER TABLE {{table}} ADD COLUMN given_name_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {{table}} ADD COLUMN family_name TEXT NOT NULL DEFAULT '';
ALTER TABLE {{table}} ADD COLUMN family_name_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {{table}} ADD COLUMN external_id TEXT NOT NULL DEFAULT '';
ALTER TABLE {{table}} ADD COLUMN external_id_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {{table}} ADD COLUMN last_sign_in_at BIGINT;
ALTER TABLE {{table}} ADD COLUMN last_sign_in_at_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {{qualified:external_id}} ON {{table_name}} (issuer, external_id) WHERE external_id <> '';

-- Leases: one replica at a time does a job (a reconcile, a change-feed
-- consumer). expires_at is Unix milliseconds; cursor_pos is the job's
-- position, kept when the lease passes to another replica.
CREATE TABLE IF NOT EXISTS {{qualified:leases}} (
	name       TEXT   NOT NULL PRIMARY KEY,
	holder     TEXT   NOT NULL,
	expires_at BIGINT NOT NULL,
	cursor_pos BIGINT NOT NULL DEFAULT 0
);
