package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// Open SQLite with the settings it needs, migrate, and sync a user.
func Example() {
	dir, _ := os.MkdirTemp("", "usersync")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	store, err := sqlstore.New(db, sqlstore.SQLite)
	if err != nil {
		panic(err)
	}
	if err := store.Migrate(ctx); err != nil {
		panic(err)
	}

	syncer := usersync.New(store)
	u, outcome, err := syncer.Upsert(ctx, usersync.Update{
		Issuer: "https://example.clerk.accounts.dev", Subject: "user_2abc", Version: 1700000000000,
		Fields: usersync.AllFields, Profile: usersync.Profile{Name: "Ada Lovelace", Email: "ada@example.com"},
	})
	if err != nil {
		panic(err)
	}
	n, _ := store.Count(ctx)
	fmt.Println(outcome, u.Name, n)
	// Output: created Ada Lovelace 1
}
