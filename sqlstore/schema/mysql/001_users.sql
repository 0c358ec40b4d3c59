-- usersync users table, MySQL 8 and MariaDB 10.6+. Keys compare byte for
-- byte (utf8mb4_bin): user IDs are case-sensitive. Times are Unix
-- milliseconds; *_version columns hold the version each profile field was
-- last written at.
CREATE TABLE IF NOT EXISTS {{table}} (
	id                   VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
	token_identifier     VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL UNIQUE,
	issuer               VARCHAR(512) NOT NULL,
	subject              VARCHAR(255) NOT NULL,
	name                 TEXT    NOT NULL,
	email                TEXT    NOT NULL,
	email_verified       BOOLEAN NOT NULL,
	picture_url          TEXT    NOT NULL,
	username             TEXT    NOT NULL,
	phone_number         TEXT    NOT NULL,
	metadata             JSON,
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
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
