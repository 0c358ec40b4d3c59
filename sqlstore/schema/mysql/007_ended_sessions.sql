-- Version 7: ended sessions (package sessions), which every replica
-- reads: a row per ending of a session (session_id set) or of every
-- session of a user (session_id '', subject set), which the store records
-- at once on the user's delete.
--
-- An ending is recorded once: a session's by (issuer, session_id), a
-- user's by (issuer, subject). MySQL has no partial indexes, so two
-- stored generated columns hold the keys, NULL where they do not apply
-- (a unique index never matches NULLs): session_key is the session ID of
-- a session's ending, user_key the subject of a user's. An INSERT ... ON
-- DUPLICATE KEY UPDATE seq = seq meets them and changes nothing. Keys
-- are VARBINARY, which compares byte for byte and never pads. ended_at
-- and recorded_at are Unix milliseconds: ended_at is the provider's
-- (pruned by it), recorded_at the server's clock as the INSERT ran (not
-- the transaction's start). seq orders the endings of one millisecond.
-- Readers page by (recorded_at, seq), and the prune deletes by ended_at.
CREATE TABLE IF NOT EXISTS {{qualified:ended_sessions}} (
	seq         BIGINT         NOT NULL AUTO_INCREMENT PRIMARY KEY,
	issuer      VARBINARY(255) NOT NULL,
	session_id  VARBINARY(255) NOT NULL,
	subject     VARBINARY(255) NOT NULL,
	ended_at    BIGINT         NOT NULL,
	recorded_at BIGINT         NOT NULL,
	session_key VARBINARY(255) AS (NULLIF(session_id, '')) STORED,
	user_key    VARBINARY(255) AS (IF(session_id = '', subject, NULL)) STORED,
	UNIQUE KEY {{name:ended_sid}} (issuer, session_key),
	UNIQUE KEY {{name:ended_user}} (issuer, user_key),
	KEY {{name:ended_rec}} (recorded_at, seq),
	KEY {{name:ended_end}} (ended_at)
) ENGINE=InnoDB;
