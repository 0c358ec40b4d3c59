-- Version 4: the change feed. change_count counts each user's changes (1
-- for the write that created the row); every write that changes a row
-- raises it, which also tells a created row from an updated one. Triggers
-- append a change to <table>_changes in the transaction of the write:
-- outcome 1 created, 2 updated, 3 deleted; at is the write's time in Unix
-- milliseconds. SQLite has one writer at a time, so the rowid numbers the
-- changes in commit order: seq is the feed's position. (Not AUTOINCREMENT,
-- whose bookkeeping costs a page write per change: pruning keeps the
-- newest change instead, so that a new one never takes an old number.)
ALTER TABLE {{table}} ADD COLUMN change_count BIGINT NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS {{qualified:changes}} (
	seq     INTEGER PRIMARY KEY,
	user_id TEXT    NOT NULL,
	outcome INTEGER NOT NULL,
	at      BIGINT  NOT NULL
);
-- begin statement
CREATE TRIGGER IF NOT EXISTS {{qualified:changes_insert}} AFTER INSERT ON {{table_name}}
BEGIN
	INSERT INTO {{name:changes}} (user_id, outcome, at)
	VALUES (NEW.id, CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE 3 END, NEW.updated_at);
END;
-- end statement
-- A write that changes the row but not change_count (one of a release
-- before this migration, still running during a rolling deploy) has it
-- raised here, which records its change through the trigger below. (That
-- one sees the row as this trigger found it, deleted_at set already: a
-- tombstone is final, so a change of a deleted row is its deletion.)
-- begin statement
CREATE TRIGGER IF NOT EXISTS {{qualified:changes_count}} AFTER UPDATE ON {{table_name}}
WHEN NEW.change_count = OLD.change_count AND
	(NEW.updated_at IS NOT OLD.updated_at OR NEW.deleted_at IS NOT OLD.deleted_at)
BEGIN
	UPDATE {{table_name}} SET change_count = change_count + 1 WHERE id = NEW.id;
END;
-- end statement
-- begin statement
CREATE TRIGGER IF NOT EXISTS {{qualified:changes_update}} AFTER UPDATE OF change_count ON {{table_name}}
WHEN NEW.change_count <> OLD.change_count
BEGIN
	INSERT INTO {{name:changes}} (user_id, outcome, at)
	VALUES (NEW.id, CASE WHEN NEW.deleted_at IS NOT NULL THEN 3 ELSE 2 END, NEW.updated_at);
END;
-- end statement
