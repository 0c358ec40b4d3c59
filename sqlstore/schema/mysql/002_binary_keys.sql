-- Version 2: keys compare byte for byte. utf8mb4_bin pads with spaces
-- ("alice" = "alice  "), so the ID and the token identifier become
-- VARBINARY, which never does. A foreign key of your own to the ID blocks
-- this change (MySQL error 1833): drop it, migrate, make its column
-- VARBINARY(128) too, and add it again.
--
-- email_verified keeps a version of its own, so that a token with an
-- email but no email_verified claim leaves the stored flag alone.
-- Existing rows start with the version of their email.
ALTER TABLE {{table}}
	MODIFY id VARBINARY(128) NOT NULL,
	MODIFY token_identifier VARBINARY(512) NOT NULL,
	ADD COLUMN email_verified_version BIGINT NOT NULL DEFAULT 0;
UPDATE {{table}} SET email_verified_version = email_version WHERE email_verified_version = 0;
