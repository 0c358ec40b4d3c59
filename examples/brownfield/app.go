// Command brownfield is an app that had users before it had Clerk: its
// own users table with integer keys, and orders that point at it. It
// keeps the users of a Clerk instance linked to its own rows with
// usersync (all of it in sync.go): a legacy user is linked by the external
// ID Clerk got when the users were imported, or by their verified email;
// a new one gets a row; a deleted one's orders are anonymised in the
// transaction of the delete.
//
//	CLERK_ISSUER=https://your-app.clerk.accounts.dev CLERK_SECRET_KEY=sk_test_... \
//	CLERK_WEBHOOK_SECRET=whsec_... DATABASE_URL=postgres://... go run ./examples/brownfield
//
// DATABASE_URL defaults to a SQLite file, brownfield.db. For a local run
// without Clerk, `go run ./cmd/usersync fake-clerk` prints the variables.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// schema is the app's own tables, as they were before usersync: created
// here only so that the example runs on an empty database.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS users (id %s PRIMARY KEY, email VARCHAR(320), name VARCHAR(200), clerk_id VARCHAR(128) UNIQUE)`,
	`CREATE TABLE IF NOT EXISTS orders (id %s PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), item VARCHAR(200) NOT NULL, ship_to VARCHAR(500))`,
}

// createSchema creates the app's tables if they are missing.
func createSchema(ctx context.Context, db *sql.DB, postgres bool) error {
	key := "INTEGER" // SQLite's rowid
	if postgres {
		key = "BIGSERIAL"
	}
	for _, st := range schema {
		if _, err := db.ExecContext(ctx, strings.ReplaceAll(st, "%s", key)); err != nil {
			return err
		}
	}
	return nil
}

// sqlFor returns query with PostgreSQL's placeholders if postgres.
func sqlFor(postgres bool, query string) string {
	if !postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// forget anonymises the user with the app's id, and their orders, in tx.
func forget(ctx context.Context, tx *sql.Tx, postgres bool, id any) error {
	if _, err := tx.ExecContext(ctx, sqlFor(postgres, "UPDATE orders SET ship_to = NULL WHERE user_id = ?"), id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, sqlFor(postgres, "UPDATE users SET email = NULL, name = NULL WHERE id = ?"), id)
	return err
}

// order is an order as the API shows it.
type order struct {
	ID     int64   `json:"id"`
	Item   string  `json:"item"`
	ShipTo *string `json:"ship_to"`
}

// ordersOf serves the orders of the app's user id.
func ordersOf(db *sql.DB, postgres bool) func(id int64) http.Handler {
	return func(id int64) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rows, err := db.QueryContext(r.Context(), sqlFor(postgres, "SELECT id, item, ship_to FROM orders WHERE user_id = ? ORDER BY id"), id)
			if err != nil {
				http.Error(w, "cannot read orders", http.StatusInternalServerError)
				return
			}
			defer rows.Close()
			out := []order{}
			for rows.Next() {
				var o order
				if err := rows.Scan(&o.ID, &o.Item, &o.ShipTo); err != nil {
					http.Error(w, "cannot read orders", http.StatusInternalServerError)
					return
				}
				out = append(out, o)
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(out)
		})
	}
}
