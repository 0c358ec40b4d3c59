package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/orgs"
	"github.com/usersync/usersync/sqlstore"
)

// BenchmarkMember measures Member, the request path's check (the
// organization joined with the membership, in one statement), beside the
// floor: a hand-written prepared SELECT of the same membership row by its
// primary key through the same *sql.DB, scanned into plain values. It
// reports member/floor, the ratio of their ns/op, on a table of 1,000
// organizations with 20 members each.
func BenchmarkMember(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		b.Run(be.Name, func(b *testing.B) {
			be.SkipIfUnset(b)
			db, table := be.Open(b)
			s := be.StoreOn(b, db, table)
			const nOrgs, perOrg = 1000, 20
			loadOrgs(b, s, nOrgs, perOrg)
			ph := func(i int) string {
				if be.Dialect == sqlstore.Postgres {
					return fmt.Sprintf("$%d", i)
				}
				return "?"
			}
			floor, err := db.Prepare(fmt.Sprintf("SELECT membership_id, role, permissions, metadata, version, created_at, updated_at, deleted_at FROM %s_memberships WHERE org_key = %s AND user_key = %s",
				table, ph(1), ph(2)))
			if err != nil {
				b.Fatal(err)
			}
			defer floor.Close()
			// The same check as an app would hand-write it: the live
			// organization and the member's row, in one join.
			floorJoin, err := db.Prepare(fmt.Sprintf("SELECT o.name, o.slug, o.image_url, o.metadata, o.version, o.created_at, o.updated_at, o.deleted_at, "+
				"m.membership_id, m.role, m.permissions, m.metadata, m.version, m.created_at, m.updated_at, m.deleted_at "+
				"FROM %s_organizations o LEFT JOIN %s_memberships m ON m.org_key = o.org_key AND m.user_key = %s WHERE o.org_key = %s",
				table, table, ph(1), ph(2)))
			if err != nil {
				b.Fatal(err)
			}
			defer floorJoin.Close()
			type key struct{ org, sub string }
			keys := make([]key, 4096)
			for i := range keys {
				n := (i * 7919) % (nOrgs * perOrg)
				keys[i] = key{fmt.Sprintf("org_%05d", n/perOrg), fmt.Sprintf("user_%05d", n%perOrg)}
			}
			var id, role, perms string
			var version int64
			var meta, created, updated, deleted any
			runFloor := func(i int) {
				k := keys[i%len(keys)]
				if err := floor.QueryRow(orgs.Key(orgIssuer, k.org), usersync.TokenIdentifier(orgIssuer, k.sub)).
					Scan(&id, &role, &perms, &meta, &version, &created, &updated, &deleted); err != nil {
					b.Fatal(err)
				}
			}
			var oname, oslug, oimage string
			var oversion int64
			var ometa, ocreated, oupdated, odeleted any
			runFloorJoin := func(i int) {
				k := keys[i%len(keys)]
				if err := floorJoin.QueryRow(usersync.TokenIdentifier(orgIssuer, k.sub), orgs.Key(orgIssuer, k.org)).
					Scan(&oname, &oslug, &oimage, &ometa, &oversion, &ocreated, &oupdated, &odeleted, &id, &role, &perms, &meta, &version, &created, &updated, &deleted); err != nil {
					b.Fatal(err)
				}
			}
			runMember := func(i int) {
				k := keys[i%len(keys)]
				if _, err := s.Member(ctx, orgIssuer, k.org, k.sub); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("floor", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					runFloor(i)
				}
			})
			b.Run("member", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					runMember(i)
				}
			})
			// The ratios, from the calls interleaved in blocks of 32: all
			// meet the same load of a shared machine. member/floor is
			// against the membership's row alone; member/join against the
			// same check hand-written, the organization's row included.
			b.Run("ratio", func(b *testing.B) {
				var floorTime, joinTime, memberTime time.Duration
				for i := 0; b.Loop(); i++ {
					start := time.Now()
					for j := range 32 {
						runFloor(i*32 + j)
					}
					mid := time.Now()
					for j := range 32 {
						runFloorJoin(i*32 + j)
					}
					mid2 := time.Now()
					for j := range 32 {
						runMember(i*32 + j)
					}
					floorTime, joinTime, memberTime = floorTime+mid.Sub(start), joinTime+mid2.Sub(mid), memberTime+time.Since(mid2)
				}
				b.ReportMetric(float64(memberTime)/float64(floorTime), "member/floor")
				b.ReportMetric(float64(memberTime)/float64(joinTime), "member/join")
			})
		})
	}
}

// loadOrgs stores nOrgs organizations with perOrg members each, in
// batches.
func loadOrgs(b *testing.B, s *sqlstore.Store, nOrgs, perOrg int) {
	ctx := context.Background()
	os, ms := reconcileData(nOrgs, perOrg)
	if _, err := s.UpsertOrganizations(ctx, os); err != nil {
		b.Fatal(err)
	}
	for start := 0; start < len(ms); start += 1000 {
		if _, err := s.UpsertMemberships(ctx, ms[start:min(start+1000, len(ms))]); err != nil {
			b.Fatal(err)
		}
	}
}

// reconcileData is what a reconcile of nOrgs organizations with perOrg
// members each writes.
func reconcileData(nOrgs, perOrg int) ([]orgs.Organization, []orgs.Membership) {
	var os []orgs.Organization
	var ms []orgs.Membership
	for o := range nOrgs {
		id := fmt.Sprintf("org_%05d", o)
		os = append(os, org(id, 1))
		for u := range perOrg {
			sub := fmt.Sprintf("user_%05d", u)
			ms = append(ms, membership(id, sub, "orgmem_"+id+"_"+sub, t0, 1))
		}
	}
	return os, ms
}

// BenchmarkReconcileOrganizations measures a reconcile of 1,000
// organizations with 20 members each into an empty store: in batches
// (UpsertOrganizations, then UpsertMemberships of 1,000 at a time) and
// one write per item. It reports the time per reconcile.
func BenchmarkReconcileOrganizations(b *testing.B) {
	ctx := context.Background()
	const nOrgs, perOrg = 1000, 20
	for _, be := range backends {
		for _, mode := range []string{"batch", "single"} {
			b.Run(be.Name+"/"+mode, func(b *testing.B) {
				be.SkipIfUnset(b)
				for b.Loop() {
					b.StopTimer()
					s := be.NewStore(b)
					os, ms := reconcileData(nOrgs, perOrg)
					b.StartTimer()
					start := time.Now()
					if mode == "batch" {
						loadOrgs(b, s, nOrgs, perOrg)
					} else {
						for _, o := range os {
							if _, _, err := s.UpsertOrganization(ctx, o); err != nil {
								b.Fatal(err)
							}
						}
						for _, m := range ms {
							if _, _, err := s.UpsertMembership(ctx, m); err != nil {
								b.Fatal(err)
							}
						}
					}
					b.ReportMetric(float64(len(os)+len(ms))/time.Since(start).Seconds(), "writes/s")
				}
			})
		}
	}
}
