-- Version 6: organizations and memberships (package orgs), beside the
-- users, under the users' write rules; and their changes in the change
-- feed.
--
-- An organization's key is org_key, orgs.Key(issuer, org_id): its
-- issuer, "|", the provider's ID. A membership's is (org_key, user_key),
-- user_key being the member's token identifier (issuer "|" subject): one
-- row per organization and user, which the provider's membership ID
-- (membership_id) holds. Keys are VARBINARY, which compares byte for byte
-- and never pads. Deletes leave tombstones (deleted_at set), as users'
-- do. Every row of one organization has user keys of one issuer, so the
-- primary key orders an organization's members by subject, and
-- <table>_mem_user a user's memberships by organization ID. Times
-- are DATETIME(3) in UTC; created_at, the provider's, may be NULL
-- (unknown). permissions is a JSON array of strings.
--
-- change_count counts each row's changes (1 for the write that created
-- the row), and triggers append a change to <table>_changes when it
-- rises, as the users' do: entity 1 for an organization and 2 for a
-- membership, with its organization ID and, for a membership, the
-- member's subject; outcome 1 created (a membership that a later one
-- revives too), 2 updated, 3 deleted. Triggers rather than statements of
-- the store: the memberships that the delete of their organization or
-- user ends are one UPDATE, and each is in the feed. For the sequencer,
-- such a change's user_id is a digest of the row's key and its user_seq
-- the row's change_count, so each row's changes keep the order of its
-- writes, whichever node took them. A user's change has entity 0 and
-- empty organization_id and subject.
CREATE TABLE IF NOT EXISTS {{qualified:organizations}} (
	org_key      VARBINARY(512) NOT NULL PRIMARY KEY,
	issuer       VARBINARY(255) NOT NULL,
	org_id       VARBINARY(128) NOT NULL,
	name         TEXT        NOT NULL,
	slug         TEXT        NOT NULL,
	image_url    TEXT        NOT NULL,
	metadata     JSON,
	version      BIGINT      NOT NULL,
	created_at   DATETIME(3) NULL,
	updated_at   DATETIME(3) NOT NULL,
	deleted_at   DATETIME(3) NULL,
	change_count BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS {{qualified:memberships}} (
	org_key       VARBINARY(512) NOT NULL,
	user_key      VARBINARY(512) NOT NULL,
	issuer        VARBINARY(255) NOT NULL,
	org_id        VARBINARY(128) NOT NULL,
	user_subject  VARBINARY(255) NOT NULL,
	membership_id VARBINARY(128) NOT NULL,
	role          TEXT        NOT NULL,
	permissions   TEXT        NOT NULL,
	metadata      JSON,
	version       BIGINT      NOT NULL,
	created_at    DATETIME(3) NULL,
	updated_at    DATETIME(3) NOT NULL,
	deleted_at    DATETIME(3) NULL,
	change_count  BIGINT      NOT NULL,
	PRIMARY KEY (org_key, user_key),
	KEY {{name:mem_user}} (user_key, org_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
ALTER TABLE {{qualified:changes}}
	ADD COLUMN entity          TINYINT NOT NULL DEFAULT 0,
	ADD COLUMN organization_id VARBINARY(128) NOT NULL DEFAULT '',
	ADD COLUMN subject         VARBINARY(255) NOT NULL DEFAULT '';
-- begin statement
CREATE TRIGGER {{qualified:org_ins}} AFTER INSERT ON {{qualified:organizations}} FOR EACH ROW
	INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at, entity, organization_id, subject)
	VALUES (MD5(NEW.org_key), NEW.change_count, IF(NEW.deleted_at IS NULL, 1, 3), NEW.updated_at, 1, NEW.org_id, '');
-- end statement
-- begin statement
CREATE TRIGGER {{qualified:org_upd}} AFTER UPDATE ON {{qualified:organizations}} FOR EACH ROW
BEGIN
	IF NEW.change_count <> OLD.change_count THEN
		INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at, entity, organization_id, subject)
		VALUES (MD5(NEW.org_key), NEW.change_count,
			CASE WHEN NEW.deleted_at IS NOT NULL THEN 3 WHEN OLD.deleted_at IS NOT NULL THEN 1 ELSE 2 END, NEW.updated_at, 1, NEW.org_id, '');
	END IF;
END;
-- end statement
-- begin statement
CREATE TRIGGER {{qualified:mem_ins}} AFTER INSERT ON {{qualified:memberships}} FOR EACH ROW
	INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at, entity, organization_id, subject)
	VALUES (MD5(CONCAT(NEW.org_key, ' ', NEW.user_key)), NEW.change_count, IF(NEW.deleted_at IS NULL, 1, 3), NEW.updated_at, 2, NEW.org_id, NEW.user_subject);
-- end statement
-- begin statement
CREATE TRIGGER {{qualified:mem_upd}} AFTER UPDATE ON {{qualified:memberships}} FOR EACH ROW
BEGIN
	IF NEW.change_count <> OLD.change_count THEN
		INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at, entity, organization_id, subject)
		VALUES (MD5(CONCAT(NEW.org_key, ' ', NEW.user_key)), NEW.change_count,
			CASE WHEN NEW.deleted_at IS NOT NULL THEN 3 WHEN OLD.deleted_at IS NOT NULL THEN 1 ELSE 2 END, NEW.updated_at, 2, NEW.org_id, NEW.user_subject);
	END IF;
END;
-- end statement
