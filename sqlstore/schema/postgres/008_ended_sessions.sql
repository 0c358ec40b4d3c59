-- Version 8: ended sessions (package sessions), which every replica
-- reads: a row per ending of a session (session_id set) or of every
-- session of a user (session_id '', subject set), which the store records
-- at once on the user's delete.
--
-- An ending is recorded once: a session's by (issuer, session_id), a
-- user's by (issuer, subject), each a partial unique index, which an
-- INSERT ... ON CONFLICT DO NOTHING meets. Keys compare byte for byte
-- (COLLATE "C"). ended_at and recorded_at are Unix milliseconds: ended_at
-- is the provider's (pruned by it), recorded_at the server's
-- clock_timestamp() as the INSERT ran (not the transaction's start). seq
-- orders the endings of one millisecond. Readers page by (recorded_at,
-- seq), and the prune deletes by ended_at.
CREATE TABLE IF NOT EXISTS {{qualified:ended_sessions}} (
	seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	issuer      TEXT COLLATE "C" NOT NULL,
	session_id  TEXT COLLATE "C" NOT NULL,
	subject     TEXT COLLATE "C" NOT NULL,
	ended_at    BIGINT NOT NULL,
	recorded_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS {{name:ended_sid}} ON {{qualified:ended_sessions}} (issuer, session_id) WHERE session_id <> '';
CREATE UNIQUE INDEX IF NOT EXISTS {{name:ended_user}} ON {{qualified:ended_sessions}} (issuer, subject) WHERE session_id = '';
CREATE INDEX IF NOT EXISTS {{name:ended_rec}} ON {{qualified:ended_sessions}} (recorded_at, seq);
CREATE INDEX IF NOT EXISTS {{name:ended_end}} ON {{qualified:ended_sessions}} (ended_at);
