package reconcile_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/reconcile"
)

// directory is a Source: an in-house directory of users, listed oldest
// first. clerk.UserList is the Source of a Clerk instance.
type directory struct {
	issuer string
	users  []usersync.Write
}

func (d *directory) Issuer() string                     { return d.issuer }
func (d *directory) Count(context.Context) (int, error) { return len(d.users), nil }
func (d *directory) Page(_ context.Context, offset, limit int) ([]usersync.Write, error) {
	return d.users[min(offset, len(d.users)):min(offset+limit, len(d.users))], nil
}
func (d *directory) Lookup(_ context.Context, subject string) (*usersync.Write, error) {
	for _, w := range d.users {
		if w.Subject == subject {
			return &w, nil
		}
	}
	return nil, nil
}

func person(subject, name string, updated int64) usersync.Write {
	return usersync.Write{
		Issuer: "https://idp.example.com", Subject: subject,
		Version: usersync.Version(updated), Fields: usersync.FieldName, Profile: usersync.Profile{Name: name},
	}
}

func ExampleReconciler_Run() {
	ctx := context.Background()
	store := memstore.New()
	syncer, err := usersync.New(usersync.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	dir := &directory{issuer: "https://idp.example.com", users: []usersync.Write{
		person("ada", "Ada", 1_700_000_000_000),
		person("bob", "Bob", 1_700_000_000_000),
		person("cy", "Cy", 1_700_000_000_000),
	}}
	r, err := reconcile.New(reconcile.Config{Syncer: syncer, Source: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}

	report, err := r.Run(ctx) // the first import
	fmt.Println(report.Created, report.Updated, report.Unchanged, report.Deleted, err)

	// Bob renamed himself and Cy left; the webhooks of both were missed.
	time.Sleep(time.Millisecond) // Cy was stored before this run started
	dir.users = []usersync.Write{person("ada", "Ada", 1_700_000_000_000), person("bob", "Robert", 1_700_000_100_000)}
	report, err = r.Run(ctx) // the healing
	fmt.Println(report.Created, report.Updated, report.Unchanged, report.Deleted, err)

	bob, _ := store.GetByTokenIdentifier(ctx, usersync.TokenIdentifier("https://idp.example.com", "bob"))
	_, err = store.GetByTokenIdentifier(ctx, usersync.TokenIdentifier("https://idp.example.com", "cy"))
	fmt.Println(bob.Name, err)
	// Output:
	// 3 0 0 0 <nil>
	// 0 1 1 1 <nil>
	// Robert usersync: user was deleted
}
