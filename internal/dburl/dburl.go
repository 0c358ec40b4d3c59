// Package dburl opens the database a DATABASE_URL names, for the chat
// example and the usersync command: postgres:// or postgresql:// (pgx),
// mysql:// followed by a go-sql-driver DSN, else the path of an SQLite file
// (or a file: URI).
package dburl

import (
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/usersync/usersync/sqlstore"
)

// Open opens the database of url with a pool sized for a server: SQLite
// one connection (it serialises writes anyway); the servers 32 open
// connections, all kept idle (database/sql's default of 2 idle closes and
// reopens connections under load: 4.7x fewer webhooks per second in
// sqlstore's pool benchmark).
func Open(url string) (*sql.DB, sqlstore.Dialect, error) {
	driver, dsn, dialect := "sqlite", sqlstore.SQLiteDSN(url), sqlstore.SQLite
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		driver, dsn, dialect = "pgx", url, sqlstore.Postgres
	case strings.HasPrefix(url, "mysql://"):
		driver, dsn, dialect = "mysql", strings.TrimPrefix(url, "mysql://"), sqlstore.MySQL
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, dialect, fmt.Errorf("open the %s database: %w", dialect, err)
	}
	switch dialect {
	case sqlstore.SQLite:
		db.SetMaxOpenConns(1)
	default:
		db.SetMaxOpenConns(32)
		db.SetMaxIdleConns(32)
		db.SetConnMaxIdleTime(5 * time.Minute)
		db.SetConnMaxLifetime(30 * time.Minute)
		if dialect == sqlstore.MySQL {
			db.SetConnMaxLifetime(3 * time.Minute) // below the server's and proxies' idle timeouts
		}
	}
	return db, dialect, nil
}
