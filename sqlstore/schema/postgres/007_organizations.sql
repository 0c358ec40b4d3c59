-- Version 7: organizations and memberships (package orgs), beside the
-- users, under the users' write rules; and their changes in the change
-- feed.
--
-- An organization's key is org_key, orgs.Key(issuer, org_id): its
-- issuer, "|", the provider's ID. A membership's is (org_key, user_key),
-- user_key being the member's token identifier (issuer "|" subject): one
-- row per organization and user, which the provider's membership ID
-- (membership_id) holds. Keys compare byte for byte (COLLATE "C").
-- Deletes leave tombstones (deleted_at set), as users' do. Every row of
-- one organization has user keys of one issuer, so the primary key orders
-- an organization's members by subject, and <table>_mem_user a
-- user's memberships by organization ID. created_at, the provider's, may
-- be NULL (unknown). permissions is a JSON array of strings.
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
-- writes. A user's change has entity 0 and empty organization_id and
-- subject.
CREATE TABLE IF NOT EXISTS {{qualified:organizations}} (
	org_key      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	issuer       TEXT COLLATE "C" NOT NULL,
	org_id       TEXT COLLATE "C" NOT NULL,
	name         TEXT   NOT NULL,
	slug         TEXT   NOT NULL,
	image_url    TEXT   NOT NULL,
	metadata     JSONB,
	version      BIGINT NOT NULL,
	created_at   TIMESTAMPTZ,
	updated_at   TIMESTAMPTZ NOT NULL,
	deleted_at   TIMESTAMPTZ,
	change_count BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {{qualified:memberships}} (
	org_key       TEXT COLLATE "C" NOT NULL,
	user_key      TEXT COLLATE "C" NOT NULL,
	issuer        TEXT COLLATE "C" NOT NULL,
	org_id        TEXT COLLATE "C" NOT NULL,
	user_subject  TEXT COLLATE "C" NOT NULL,
	membership_id TEXT COLLATE "C" NOT NULL,
	role          TEXT   NOT NULL,
	permissions   TEXT   NOT NULL,
	metadata      JSONB,
	version       BIGINT NOT NULL,
	created_at    TIMESTAMPTZ,
	updated_at    TIMESTAMPTZ NOT NULL,
	deleted_at    TIMESTAMPTZ,
	change_count  BIGINT NOT NULL,
	PRIMARY KEY (org_key, user_key)
);
CREATE INDEX IF NOT EXISTS {{name:mem_user}} ON {{qualified:memberships}} (user_key, org_key);
ALTER TABLE {{qualified:changes}}
	ADD COLUMN IF NOT EXISTS entity          SMALLINT NOT NULL DEFAULT 0,
	ADD COLUMN IF NOT EXISTS organization_id TEXT COLLATE "C" NOT NULL DEFAULT '',
	ADD COLUMN IF NOT EXISTS subject         TEXT COLLATE "C" NOT NULL DEFAULT '';
-- begin statement
CREATE OR REPLACE FUNCTION {{qualified:org_record}}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	kind SMALLINT;
BEGIN
	IF TG_OP = 'INSERT' THEN
		kind := CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE 3 END;
	ELSIF NEW.change_count = OLD.change_count THEN
		RETURN NULL;
	ELSIF NEW.deleted_at IS NOT NULL THEN
		kind := 3;
	ELSIF OLD.deleted_at IS NOT NULL THEN
		kind := 1;
	ELSE
		kind := 2;
	END IF;
	INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at, entity, organization_id, subject)
	VALUES (pg_catalog.md5(NEW.org_key), NEW.change_count, kind, NEW.updated_at, 1, NEW.org_id, '');
	RETURN NULL;
END
$$;
-- end statement
-- begin statement
CREATE OR REPLACE FUNCTION {{qualified:mem_record}}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	kind SMALLINT;
BEGIN
	IF TG_OP = 'INSERT' THEN
		kind := CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE 3 END;
	ELSIF NEW.change_count = OLD.change_count THEN
		RETURN NULL;
	ELSIF NEW.deleted_at IS NOT NULL THEN
		kind := 3;
	ELSIF OLD.deleted_at IS NOT NULL THEN
		kind := 1;
	ELSE
		kind := 2;
	END IF;
	INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at, entity, organization_id, subject)
	VALUES (pg_catalog.md5(NEW.org_key || ' ' || NEW.user_key), NEW.change_count, kind, NEW.updated_at, 2, NEW.org_id, NEW.user_subject);
	RETURN NULL;
END
$$;
-- end statement
DROP TRIGGER IF EXISTS {{name:org_changes}} ON {{qualified:organizations}};
CREATE TRIGGER {{name:org_changes}} AFTER INSERT OR UPDATE ON {{qualified:organizations}} FOR EACH ROW EXECUTE FUNCTION {{qualified:org_record}}();
DROP TRIGGER IF EXISTS {{name:mem_changes}} ON {{qualified:memberships}};
CREATE TRIGGER {{name:mem_changes}} AFTER INSERT OR UPDATE ON {{qualified:memberships}} FOR EACH ROW EXECUTE FUNCTION {{qualified:mem_record}}();
