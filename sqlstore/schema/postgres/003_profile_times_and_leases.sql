-- Version 3: given and family names beside the display name, the external
-- ID (the person's ID in an earlier system: indexed, for a lookup by it)
-- and the time of the last sign-in, each with the version of its own; and
-- times as TIMESTAMPTZ instead of Unix milliseconds.
ALTER TABLE {{table}}
	ADD COLUMN IF NOT EXISTS given_name              TEXT   NOT NULL DEFAULT '',
	ADD COLUMN IF NOT EXISTS given_name_version      BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN IF NOT EXISTS family_name             TEXT   NOT NULL DEFAULT '',
	ADD COLUMN IF NOT EXISTS family_name_version     BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN IF NOT EXISTS external_id             TEXT COLLATE "C" NOT NULL DEFAULT '',
	ADD COLUMN IF NOT EXISTS external_id_version     BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN IF NOT EXISTS last_sign_in_at         TIMESTAMPTZ,
	ADD COLUMN IF NOT EXISTS last_sign_in_at_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {{table}}
	ALTER COLUMN created_at TYPE TIMESTAMPTZ USING to_timestamp(created_at / 1000.0),
	ALTER COLUMN updated_at TYPE TIMESTAMPTZ USING to_timestamp(updated_at / 1000.0),
	ALTER COLUMN deleted_at TYPE TIMESTAMPTZ USING to_timestamp(deleted_at / 1000.0);
CREATE INDEX IF NOT EXISTS {{name:external_id}} ON {{table}} (issuer, external_id) WHERE external_id <> '';

-- Leases: one replica at a time does a job (a reconcile, a change-feed
-- consumer). expires_at is Unix milliseconds of the replicas' clocks;
-- cursor_pos is the job's position, kept when the lease passes on.
CREATE TABLE IF NOT EXISTS {{qualified:leases}} (
	name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	holder     TEXT   NOT NULL,
	expires_at BIGINT NOT NULL,
	cursor_pos BIGINT NOT NULL DEFAULT 0
);
