package main

// sync.go is everything usersync asks of this app; the rest (its schema,
// its handlers, main) is the app's own and imports no usersync package.
// TestUsersyncLines holds it to that, and to 80 lines of code.

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/sqlstore"
)

// wire keeps Clerk's users in clerk_users, each linked to a row of the
// app's own users table in the transaction of its write.
func wire(ctx context.Context, db *sql.DB, postgres bool, getenv func(string) string, mp metric.MeterProvider, log *slog.Logger) (*clerk.App, error) {
	d := sqlstore.SQLite
	if postgres {
		d = sqlstore.Postgres
	}
	link, err := sqlstore.NewLink(sqlstore.LinkConfig{Dialect: d, Table: "users", Key: "id", UserID: "clerk_id", Email: "email",
		ParseKey: func(s string) (any, bool) { n, err := strconv.ParseInt(s, 10, 64); return n, err == nil }})
	if err != nil {
		return nil, err
	}
	store, err := sqlstore.New(db, sqlstore.Config{Dialect: d, Table: "clerk_users", MeterProvider: mp, Logger: log,
		OnWrite: func(ctx context.Context, tx *sql.Tx, c usersync.Change) error {
			id, err := link.Find(ctx, tx, c)
			switch {
			case err != nil:
				return err
			case c.Outcome == usersync.Deleted && id != nil:
				return forget(ctx, tx, postgres, id) // exactly once, with the delete
			case c.Outcome == usersync.Deleted, id == nil && c.User.Email == "" && c.ExternalID == "":
				return nil // a token-only user: linked once Clerk's API completes them
			case id == nil:
				_, err = tx.ExecContext(ctx, sqlFor(postgres, "INSERT INTO users (email, name, clerk_id) VALUES (?, ?, ?)"), c.User.Email, c.User.Name, c.UserID)
			default: // a token-only user has no email yet: keep the one we have
				_, err = tx.ExecContext(ctx, sqlFor(postgres, "UPDATE users SET email = COALESCE(NULLIF(?, ''), email), name = COALESCE(NULLIF(?, ''), name) WHERE id = ?"), c.User.Email, c.User.Name, id)
			}
			return err
		}})
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		return nil, err
	}
	cc := clerk.Config{Issuer: getenv("CLERK_ISSUER"), SecretKey: getenv("CLERK_SECRET_KEY"),
		WebhookSecrets: []string{getenv("CLERK_WEBHOOK_SECRET")}, APIURL: getenv("CLERK_API_URL")}
	return clerk.Wire(ctx, store, clerk.SetupConfig{Config: cc, Logger: log, MeterProvider: mp, ReconcileEvery: time.Hour})
}

// mount serves Clerk's webhooks and puts the app's user ID of the caller
// in the context of the app's handlers.
func mount(mux *http.ServeMux, app *clerk.App, db *sql.DB, postgres bool, me func(userID int64) http.Handler) {
	mux.Handle("POST /webhooks/clerk", app.Webhook)
	mux.Handle("GET /me/orders", app.Syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := usersync.UserFromContext(r.Context())
		var id int64
		if err := db.QueryRowContext(r.Context(), sqlFor(postgres, "SELECT id FROM users WHERE clerk_id = ?"), u.ID).Scan(&id); err != nil {
			http.Error(w, "no account", http.StatusForbidden)
			return
		}
		me(id).ServeHTTP(w, r)
	})))
}
