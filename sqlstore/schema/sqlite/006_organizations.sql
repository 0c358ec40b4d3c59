-- Version 6: organizations and memberships (package orgs), beside the
-- users, under the users' write rules; and their changes in the change
-- feed.
--
-- An organization's key is org_key, orgs.Key(issuer, org_id): its
-- issuer, "|", the provider's ID. A membership's is (org_key, user_key),
-- user_key being the member's token identifier (issuer "|" subject): one
-- row per organization and user, which the provider's membership ID
-- (membership_id) holds. Deletes leave tombstones (deleted_at set), as
-- users' do. Every row of one organization has user keys of one issuer,
-- so the primary key orders an organization's members by subject, and
-- <table>_mem_user a user's memberships by organization ID.
-- Times are Unix milliseconds; created_at, the provider's, may be NULL
-- (unknown). permissions is a JSON array of strings.
--
-- change_count counts each row's changes (1 for the write that created
-- the row), and triggers append a change to <table>_changes when it
-- rises, as the users' do: entity 1 for an organization and 2 for a
-- membership, with its organization ID and, for a membership, the member's
-- subject; outcome 1 created (a membership that a later one revives
-- too), 2 updated, 3 deleted. Triggers rather than statements of the
-- store: the memberships that the delete of their organization or user
-- ends are one UPDATE, and each is in the feed. A user's change has
-- entity 0 and empty organization_id and subject. (WITHOUT ROWID: a
-- lookup by key reads one B-tree, not an index and then the table.)
CREATE TABLE IF NOT EXISTS {{qualified:organizations}} (
	org_key      TEXT   NOT NULL PRIMARY KEY,
	issuer       TEXT   NOT NULL,
	org_id       TEXT   NOT NULL,
	name         TEXT   NOT NULL,
	slug         TEXT   NOT NULL,
	image_url    TEXT   NOT NULL,
	metadata     TEXT,
	version      BIGINT NOT NULL,
	created_at   BIGINT,
	updated_at   BIGINT NOT NULL,
	deleted_at   BIGINT,
	change_count BIGINT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {{qualified:memberships}} (
	org_key       TEXT   NOT NULL,
	user_key      TEXT   NOT NULL,
	issuer        TEXT   NOT NULL,
	org_id        TEXT   NOT NULL,
	user_subject  TEXT   NOT NULL,
	membership_id TEXT   NOT NULL,
	role          TEXT   NOT NULL,
	permissions   TEXT   NOT NULL,
	metadata      TEXT,
	version       BIGINT NOT NULL,
	created_at    BIGINT,
	updated_at    BIGINT NOT NULL,
	deleted_at    BIGINT,
	change_count  BIGINT NOT NULL,
	PRIMARY KEY (org_key, user_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {{qualified:mem_user}} ON {{name:memberships}} (user_key, org_key);
ALTER TABLE {{qualified:changes}} ADD COLUMN entity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {{qualified:changes}} ADD COLUMN organization_id TEXT NOT NULL DEFAULT '';
ALTER TABLE {{qualified:changes}} ADD COLUMN subject TEXT NOT NULL DEFAULT '';
-- begin statement
CREATE TRIGGER IF NOT EXISTS {{qualified:organizations_insert}} AFTER INSERT ON {{name:organizations}}
BEGIN
	INSERT INTO {{name:changes}} (user_id, outcome, at, entity, organization_id, subject)
	VALUES ('', CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE 3 END, NEW.updated_at, 1, NEW.org_id, '');
END;
-- end statement
-- begin statement
CREATE TRIGGER IF NOT EXISTS {{qualified:organizations_update}} AFTER UPDATE OF change_count ON {{name:organizations}}
WHEN NEW.change_count <> OLD.change_count
BEGIN
	INSERT INTO {{name:changes}} (user_id, outcome, at, entity, organization_id, subject)
	VALUES ('', CASE WHEN NEW.deleted_at IS NOT NULL THEN 3 WHEN OLD.deleted_at IS NOT NULL THEN 1 ELSE 2 END, NEW.updated_at, 1, NEW.org_id, '');
END;
-- end statement
-- begin statement
CREATE TRIGGER IF NOT EXISTS {{qualified:memberships_insert}} AFTER INSERT ON {{name:memberships}}
BEGIN
	INSERT INTO {{name:changes}} (user_id, outcome, at, entity, organization_id, subject)
	VALUES ('', CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE 3 END, NEW.updated_at, 2, NEW.org_id, NEW.user_subject);
END;
-- end statement
-- begin statement
CREATE TRIGGER IF NOT EXISTS {{qualified:memberships_update}} AFTER UPDATE OF change_count ON {{name:memberships}}
WHEN NEW.change_count <> OLD.change_count
BEGIN
	INSERT INTO {{name:changes}} (user_id, outcome, at, entity, organization_id, subject)
	VALUES ('', CASE WHEN NEW.deleted_at IS NOT NULL THEN 3 WHEN OLD.deleted_at IS NOT NULL THEN 1 ELSE 2 END, NEW.updated_at, 2, NEW.org_id, NEW.user_subject);
END;
-- end statement
