-- Version 2: email_verified keeps a version of its own, so that a token
-- with an email but no email_verified claim leaves the stored flag alone.
-- Existing rows start with the version of their email.
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS email_verified_version BIGINT NOT NULL DEFAULT 0;
UPDATE {{table}} SET email_verified_version = email_version WHERE email_verified_version = 0;
