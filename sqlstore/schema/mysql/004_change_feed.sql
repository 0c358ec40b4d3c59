-- Version 4: the change feed. change_count counts each user's changes (1
-- for the write that created the row); every write that changes a row
-- raises it. Triggers append a change to <table>_changes in the
-- transaction of the write: outcome 1 created, 2 updated, 3 deleted; at is
-- the write's time (UTC).
--
-- Concurrent transactions commit out of the order of their ids (and on a
-- Galera cluster each node hands out its own ids), so a reader that
-- followed id could pass an id whose transaction had not committed yet and
-- skip it forever. The feed's position is seq instead, NULL until a
-- sequencer numbers the committed changes, one at a time under the lock of
-- the <table>_sequence row, after the highest seq so far: a change
-- committed later always gets a higher seq. user_seq (the user's
-- change_count) keeps each user's changes in the order of the writes,
-- whichever node took them.
ALTER TABLE {{table}} ADD COLUMN change_count BIGINT NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS {{qualified:changes}} (
	id       BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	seq      BIGINT NULL,
	user_id  VARBINARY(128) NOT NULL,
	user_seq BIGINT NOT NULL,
	outcome  TINYINT NOT NULL,
	at       DATETIME(3) NOT NULL,
	UNIQUE KEY {{name:changes_seq}} (seq)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS {{qualified:sequence}} (
	id       TINYINT NOT NULL PRIMARY KEY,
	last_seq BIGINT NOT NULL
) ENGINE=InnoDB;
INSERT IGNORE INTO {{qualified:sequence}} (id, last_seq) VALUES (1, 0);
-- begin statement
CREATE TRIGGER {{qualified:changes_insert}} AFTER INSERT ON {{table}} FOR EACH ROW
	INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at)
	VALUES (NEW.id, NEW.change_count, IF(NEW.deleted_at IS NULL, 1, 3), NEW.updated_at);
-- end statement
-- A write that changes the row but not change_count (one of a release
-- before this migration, still running during a rolling deploy) has it
-- raised here, so that its change is in the feed too.
-- begin statement
CREATE TRIGGER {{qualified:changes_count}} BEFORE UPDATE ON {{table}} FOR EACH ROW
	SET NEW.change_count = IF(NEW.change_count = OLD.change_count AND
		(NOT (NEW.updated_at <=> OLD.updated_at) OR NOT (NEW.deleted_at <=> OLD.deleted_at)),
		OLD.change_count + 1, NEW.change_count);
-- end statement
-- begin statement
CREATE TRIGGER {{qualified:changes_update}} AFTER UPDATE ON {{table}} FOR EACH ROW
BEGIN
	IF NEW.change_count <> OLD.change_count THEN
		INSERT INTO {{qualified:changes}} (user_id, user_seq, outcome, at)
		VALUES (NEW.id, NEW.change_count, IF(NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL, 3, 2), NEW.updated_at);
	END IF;
END;
-- end statement
