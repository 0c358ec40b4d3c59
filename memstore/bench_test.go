package memstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/memstore"
)

// floor is the plainest possible user table: a map under a RWMutex. The
// memstore lookups are measured against it on the same data.
type floor struct {
	mu sync.RWMutex
	m  map[string]usersync.User
}

func (f *floor) get(k string) (usersync.User, bool) {
	f.mu.RLock()
	u, ok := f.m[k]
	f.mu.RUnlock()
	return u, ok
}

type dataset struct {
	store   *memstore.Store
	byToken *floor
	byID    *floor
	tokens  []string
	ids     []string
}

var datasets = map[int]*dataset{}

func load(b *testing.B, n int) *dataset {
	if d := datasets[n]; d != nil {
		return d
	}
	d := &dataset{store: memstore.New(), byToken: &floor{m: make(map[string]usersync.User, n)}, byID: &floor{m: make(map[string]usersync.User, n)}}
	ctx := context.Background()
	for i := range n {
		sub := fmt.Sprintf("user_%09d", i)
		u, _, err := d.store.Upsert(ctx, usersync.Write{
			ID: fmt.Sprintf("id-%09d", i), TokenIdentifier: usersync.TokenIdentifier("https://clerk.example.com", sub),
			Issuer: "https://clerk.example.com", Subject: sub, Version: 1, Fields: usersync.AllFields,
			Profile: usersync.Profile{Name: "User " + sub, Email: sub + "@example.com", Metadata: json.RawMessage(`{"plan":"pro"}`)},
			At:      time.Unix(1_700_000_000, 0),
		})
		if err != nil {
			b.Fatal(err)
		}
		d.byToken.m[u.TokenIdentifier], d.byID.m[u.ID] = u, u
		d.tokens, d.ids = append(d.tokens, u.TokenIdentifier), append(d.ids, u.ID)
	}
	datasets[n] = d
	return d
}

// BenchmarkLookup compares memstore lookups with the map floor at 1k and 1M
// users, serially and in parallel. Keys are visited in a scattered order so
// that both pay the same cache misses.
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 1_000_000} {
		d := load(b, n)
		keys := func(i int) int { return (i * 7919) % n }
		cases := []struct {
			name string
			get  func(i int) error
		}{
			{"floor/token", func(i int) error { d.byToken.get(d.tokens[keys(i)]); return nil }},
			{"memstore/token", func(i int) error { _, err := d.store.GetByTokenIdentifier(ctx, d.tokens[keys(i)]); return err }},
			{"floor/id", func(i int) error { d.byID.get(d.ids[keys(i)]); return nil }},
			{"memstore/id", func(i int) error { _, err := d.store.Get(ctx, d.ids[keys(i)]); return err }},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("n=%d/%s/serial", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if err := c.get(i); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("n=%d/%s/parallel", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						if err := c.get(i); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkUpsert measures the three kinds of write: a new user, a change,
// and a stale (duplicate) delivery.
func BenchmarkUpsert(b *testing.B) {
	ctx := context.Background()
	w := usersync.Write{
		Issuer: "https://clerk.example.com", Version: 1, Fields: usersync.AllFields,
		Profile: usersync.Profile{Name: "Ada Lovelace", Email: "ada@example.com", Metadata: json.RawMessage(`{"plan":"pro"}`)},
		At:      time.Unix(1_700_000_000, 0),
	}
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		s := memstore.New()
		ids := make([]string, b.N)
		subs := make([]string, b.N)
		tokens := make([]string, b.N)
		for i := range ids {
			ids[i], subs[i] = fmt.Sprintf("id-%09d", i), fmt.Sprintf("user_%09d", i)
			tokens[i] = usersync.TokenIdentifier(w.Issuer, subs[i])
		}
		b.ResetTimer()
		for i := range b.N {
			w := w
			w.ID, w.Subject, w.TokenIdentifier = ids[i], subs[i], tokens[i]
			if _, _, err := s.Upsert(ctx, w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("changed", func(b *testing.B) {
		b.ReportAllocs()
		s := memstore.New()
		w := w
		w.ID, w.Subject, w.TokenIdentifier = "id-1", "user_1", usersync.TokenIdentifier(w.Issuer, "user_1")
		for b.Loop() {
			w.Version++
			if _, o, err := s.Upsert(ctx, w); err != nil || o == usersync.Stale {
				b.Fatal(o, err)
			}
		}
	})
	b.Run("stale", func(b *testing.B) {
		b.ReportAllocs()
		s := memstore.New()
		w := w
		w.ID, w.Subject, w.TokenIdentifier = "id-1", "user_1", usersync.TokenIdentifier(w.Issuer, "user_1")
		if _, _, err := s.Upsert(ctx, w); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, o, err := s.Upsert(ctx, w); err != nil || o != usersync.Stale {
				b.Fatal(o, err)
			}
		}
	})
}
