-- Version 5: the change feed's functions name the change table with its
-- schema (Migrate qualifies the names of an unqualified table with the
-- schema it is in). Before, a function found the table through the
-- search_path of the session that wrote, so a session whose search_path
-- listed another schema first appended its change to that schema's
-- <table>_changes, or failed: the pattern of CVE-2018-1058. The triggers
-- are made again, on these functions.
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
DROP TRIGGER IF EXISTS {{name:changes}} ON {{table}};
CREATE TRIGGER {{name:changes}} AFTER INSERT OR UPDATE ON {{table}} FOR EACH ROW EXECUTE FUNCTION {{qualified:record_change}}();
