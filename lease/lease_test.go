package lease_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/lease"
	"github.com/usersync/usersync/memstore"
)

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		ttl    time.Duration
		holder string
		ok     bool
	}{
		{0, "", true},
		{100 * time.Millisecond, strings.Repeat("h", 255), true},
		{time.Minute, "replica-a", true},
		{-time.Second, "", false},
		{99 * time.Millisecond, "", false},
		{0, strings.Repeat("h", 256), false},
	} {
		err := lease.CheckConfig("x.Config", tc.ttl, tc.holder)
		if tc.ok != (err == nil) || err != nil && (!errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), "x.Config.")) {
			t.Errorf("CheckConfig(%v, %d bytes) = %v", tc.ttl, len(tc.holder), err)
		}
	}
}

func TestNewHolder(t *testing.T) {
	a, b := lease.NewHolder(), lease.NewHolder()
	if a == b || a == "" || len(a) > 255 || lease.CheckConfig("x.Config", 0, a) != nil {
		t.Fatalf("holders %q and %q", a, b)
	}
}

func TestAcquireOneHolderAtATime(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	log := slog.New(slog.DiscardHandler)
	a, err := lease.Acquire(ctx, store, "job", "a", time.Second, log)
	if err != nil || a == nil {
		t.Fatalf("a: %v, %v", a, err)
	}
	if b, err := lease.Acquire(ctx, store, "job", "b", time.Second, log); err != nil || b != nil {
		t.Fatalf("b took a's lease: %v, %v", b, err)
	}
	if err := a.Save(ctx, 7); err != nil {
		t.Fatal(err)
	}
	a.Release()
	if a.Context().Err() == nil {
		t.Fatal("the job's context outlives Release")
	}
	b, err := lease.Acquire(ctx, store, "job", "b", time.Second, log)
	if err != nil || b == nil || b.Cursor() != 7 {
		t.Fatalf("b after a's release: %v, %v", b, err)
	}
	b.Release()
}
