-- Version 6: email_verified belongs to the address it came with. A write
-- that carries the flag with an email records that address in
-- email_verified_for (NULL: a flag without an address, which holds for
-- whatever address is stored); a read reports the flag only while the
-- stored email is that address, so a new address without a flag of its
-- own is not verified, and every order of the writes reads the same.
-- Existing flags belong to the address stored with them.
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS email_verified_for TEXT;
UPDATE {{table}} SET email_verified_for = email WHERE email_verified_for IS NULL AND email_verified_version > 0 AND deleted_at IS NULL;
