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

// Open SQLite with the settings it needs, migrate a table of your naming,
// sync users, and page through them.
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
	store, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite, Table: "accounts"})
	if err != nil {
		panic(err)
	}
	if err := store.Migrate(ctx); err != nil {
		panic(err)
	}

	syncer, err := usersync.New(usersync.Config{Store: store})
	if err != nil {
		panic(err)
	}
	for i, name := range []string{"Ada Lovelace", "Grace Hopper", "Edsger Dijkstra"} {
		_, outcome, err := syncer.Upsert(ctx, usersync.Write{
			Issuer: "https://example.clerk.accounts.dev", Subject: fmt.Sprintf("user_%d", i), Version: 1_700_000_000_000,
			Fields: usersync.FieldName, Profile: usersync.Profile{Name: name},
		})
		if err != nil {
			panic(err)
		}
		fmt.Println(outcome, name)
	}
	n, _ := store.Count(ctx)
	fmt.Println(n, "users in", store.Table())

	// Keyset pagination: pass the last ID of a page as the next "after".
	for after := ""; ; {
		page, err := store.List(ctx, after, 2)
		if err != nil {
			panic(err)
		}
		if len(page) == 0 {
			break
		}
		fmt.Println("page of", len(page))
		after = page[len(page)-1].ID
	}
	// Output:
	// created Ada Lovelace
	// created Grace Hopper
	// created Edsger Dijkstra
	// 3 users in accounts
	// page of 2
	// page of 1
}
