package feed_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/feed"
	"github.com/usersync/usersync/memstore"
)

func ExampleRunner() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memstore.New()
	syncer, err := usersync.New(usersync.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	// Changes made before the runner starts are delivered too: the feed
	// is in the store.
	syncer.Upsert(ctx, usersync.Write{ID: "id-ada", Issuer: "https://idp.example.com", Subject: "ada", Version: 1, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Ada"}})
	syncer.Upsert(ctx, usersync.Write{Issuer: "https://idp.example.com", Subject: "ada", Version: 2, Fields: usersync.FieldName, Profile: usersync.Profile{Name: "Ada L."}})
	syncer.Delete(ctx, "https://idp.example.com", "ada")

	runner, err := feed.New(feed.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	runner.Handle("audit", func(ctx context.Context, c usersync.Change) error {
		fmt.Println(c.Seq, c.Outcome, c.UserID)
		if c.Outcome == usersync.Deleted {
			close(done)
		}
		return nil
	})
	go runner.Run(ctx)
	<-done
	// Output:
	// 1 created id-ada
	// 2 updated id-ada
	// 3 deleted id-ada
}
