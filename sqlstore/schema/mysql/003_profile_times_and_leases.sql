-- Version 3: given and family names beside the display name, the external
-- ID (the person's ID in an earlier system: indexed, for a lookup by it)
-- and the time of the last sign-in, each with the version of its own;
-- times as DATETIME(3) in UTC instead of Unix milliseconds; and the issuer,
-- compared in lookups, byte for byte. Times are written and read in UTC:
-- keep the driver's loc=UTC (go-sql-driver/mysql's default).
SET time_zone = '+00:00';
ALTER TABLE {{table}}
	MODIFY issuer VARBINARY(512) NOT NULL,
	ADD COLUMN given_name              TEXT NULL,
	ADD COLUMN given_name_version      BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN family_name             TEXT NULL,
	ADD COLUMN family_name_version     BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN external_id             VARBINARY(255) NOT NULL DEFAULT '',
	ADD COLUMN external_id_version     BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN last_sign_in_at         DATETIME(3) NULL,
	ADD COLUMN last_sign_in_at_version BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN created_at_utc          DATETIME(3) NULL,
	ADD COLUMN updated_at_utc          DATETIME(3) NULL,
	ADD COLUMN deleted_at_utc          DATETIME(3) NULL;
UPDATE {{table}} SET given_name = '', family_name = '',
	created_at_utc = FROM_UNIXTIME(created_at / 1000),
	updated_at_utc = FROM_UNIXTIME(updated_at / 1000),
	deleted_at_utc = FROM_UNIXTIME(deleted_at / 1000);
ALTER TABLE {{table}}
	MODIFY given_name TEXT NOT NULL,
	MODIFY family_name TEXT NOT NULL,
	DROP COLUMN created_at,
	DROP COLUMN updated_at,
	DROP COLUMN deleted_at,
	CHANGE created_at_utc created_at DATETIME(3) NOT NULL,
	CHANGE updated_at_utc updated_at DATETIME(3) NOT NULL,
	CHANGE deleted_at_utc deleted_at DATETIME(3) NULL;
CREATE INDEX {{name:external_id}} ON {{table}} (issuer, external_id);

-- Leases: one replica at a time does a job (a reconcile, a change-feed
-- consumer). expires_at is Unix milliseconds of the replicas' clocks;
-- cursor_pos is the job's position, kept when the lease passes on.
CREATE TABLE IF NOT EXISTS {{qualified:leases}} (
	name       VARBINARY(255) NOT NULL PRIMARY KEY,
	holder     VARBINARY(255) NOT NULL,
	expires_at BIGINT NOT NULL,
	cursor_pos BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB;
