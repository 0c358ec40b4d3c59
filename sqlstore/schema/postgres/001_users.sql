-- usersync users table, PostgreSQL. Times are
-- Unix milliseconds; *_version columns hold the version each profile field
-- was last written at.
CREATE TABLE IF NOT EXISTS {{table}} (
	id                   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	token_identifier     TEXT COLLATE "C" NOT NULL UNIQUE,
	issuer               TEXT    NOT NULL,
	subject              TEXT    NOT NULL,
	name                 TEXT    NOT NULL,
	email                TEXT    NOT NULL,
	email_verified       BOOLEAN NOT NULL,
	picture_url          TEXT    NOT NULL,
	username             TEXT    NOT NULL,
	phone_number         TEXT    NOT NULL,
	metadata             JSONB,
	name_version         BIGINT  NOT NULL,
	email_version        BIGINT  NOT NULL,
	picture_url_version  BIGINT  NOT NULL,
	username_version     BIGINT  NOT NULL,
	phone_number_version BIGINT  NOT NULL,
	metadata_version     BIGINT  NOT NULL,
	version              BIGINT  NOT NULL,
	created_at           BIGINT  NOT NULL,
	updated_at           BIGINT  NOT NULL,
	deleted_at           BIGINT
);
