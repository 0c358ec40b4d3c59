-- Version 4: the change feed. change_count counts each user's changes (1
-- for the write that created the row); every write that changes a row
-- raises it, which also tells a created row from an updated one. A trigger
-- appends a change to <table>_changes in the transaction of the write:
-- outcome 1 created, 2 updated, 3 deleted; at is the write's time.
--
-- Concurrent transactions commit out of the order of their ids, so a
-- reader that followed id could pass an id whose transaction had not
-- committed yet and skip it forever. The feed's position is seq instead,
-- NULL until a sequencer numbers the committed changes, one at a time
-- under the lock of the <table>_sequence row, after the highest seq so
-- far: a change committed later always gets a higher seq. user_seq (the
-- user's change_count) keeps each user's changes in the order of the
-- writes.
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS change_count BIGINT NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS {{qualified:changes}} (
	id       BIGSERIAL PRIMARY KEY,
	seq      BIGINT UNIQUE,
	user_id  TEXT COLLATE "C" NOT NULL,
	user_seq BIGINT NOT NULL,
	outcome  SMALLINT NOT NULL,
	at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS {{name:changes_unsequenced}} ON {{qualified:changes}} (id) WHERE seq IS NULL;
CREATE TABLE IF NOT EXISTS {{qualified:sequence}} (
	id       SMALLINT PRIMARY KEY,
	last_seq BIGINT NOT NULL
);
INSERT INTO {{qualified:sequence}} (id, last_seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
-- begin statement
CREATE OR REPLACE FUNCTION {{qualified:record_change}}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	kind SMALLINT;
BEGIN
	IF TG_OP = 'INSERT' THEN
		kind := CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE 3 END;
	ELSIF NEW.change_count = OLD.change_count THEN
		RETURN NULL;
	ELSIF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
		kind := 3;
	ELSE
		kind := 2;
	END IF;
	INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at) VALUES (NEW.id, NEW.change_count, kind, NEW.updated_at);
	RETURN NULL;
END
$$;
-- end statement
-- A write that changes the row but not change_count (one of a release
-- before this migration, still running during a rolling deploy) has it
-- raised here, so that its change is in the feed too.
-- begin statement
CREATE OR REPLACE FUNCTION {{qualified:count_change}}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.change_count = OLD.change_count AND
		(NEW.updated_at IS DISTINCT FROM OLD.updated_at OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at) THEN
		NEW.change_count := OLD.change_count + 1;
	END IF;
	RETURN NEW;
END
$$;
-- end statement
DROP TRIGGER IF EXISTS {{name:changes_count}} ON {{table}};
CREATE TRIGGER {{name:changes_count}} BEFORE UPDATE ON {{table}} FOR EACH ROW EXECUTE FUNCTION {{qualified:count_change}}();
-- DROP and CREATE rather than CREATE OR REPLACE TRIGGER: PostgreSQL 12 and
-- 13 have no OR REPLACE for triggers.
DROP TRIGGER IF EXISTS {{name:changes}} ON {{table}};
CREATE TRIGGER {{name:changes}} AFTER INSERT OR UPDATE ON {{table}} FOR EACH ROW EXECUTE FUNCTION {{qualified:record_change}}();
