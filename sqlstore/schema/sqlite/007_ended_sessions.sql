-- Version 7: ended sessions (package sessions), which every replica
-- reads: a row per ending of a session (session_id set) or of every
-- session of a user (session_id '', subject set), which the store records
-- at once on the user's delete.
--
-- An ending is recorded once: a session's by (issuer, session_id), a
-- user's by (issuer, subject), each a partial unique index, which an
-- INSERT ... ON CONFLICT DO NOTHING meets. Keys compare byte for byte
-- (SQLite's BINARY collation). ended_at and recorded_at are Unix
-- milliseconds: ended_at is the provider's (pruned by it), recorded_at
-- the database's clock as the INSERT ran. seq orders the endings of one
-- millisecond; AUTOINCREMENT never hands out a seq again, even after a
-- prune removed the highest. Readers page by (recorded_at, seq), and the
-- prune deletes by ended_at.
CREATE TABLE IF NOT EXISTS {{qualified:ended_sessions}} (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	issuer      TEXT   NOT NULL,
	session_id  TEXT   NOT NULL,
	subject     TEXT   NOT NULL,
	ended_at    BIGINT NOT NULL,
	recorded_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS {{qualified:ended_sid}} ON {{name:ended_sessions}} (issuer, session_id) WHERE session_id <> '';
CREATE UNIQUE INDEX IF NOT EXISTS {{qualified:ended_user}} ON {{name:ended_sessions}} (issuer, subject) WHERE session_id = '';
CREATE INDEX IF NOT EXISTS {{qualified:ended_rec}} ON {{name:ended_sessions}} (recorded_at, seq);
CREATE INDEX IF NOT EXISTS {{qualified:ended_end}} ON {{name:ended_sessions}} (ended_at);
