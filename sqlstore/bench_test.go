package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/sqlstore"
)

// benchSizes are the table sizes of the scale benchmarks; 1M users take a
// while to load, so they run only with USERSYNC_BENCH_1M=1.
func benchSizes() []int {
	if os.Getenv("USERSYNC_BENCH_1M") != "" {
		return []int{1_000, 1_000_000}
	}
	return []int{1_000}
}

// bulkLoad fills the store with n users, 500 to a batch.
func bulkLoad(b *testing.B, s *sqlstore.Store, n int) {
	const batch = 500
	ws := make([]usersync.Write, 0, batch)
	for start := 0; start < n; start += batch {
		ws = ws[:0]
		for i := start; i < min(start+batch, n); i++ {
			sub := fmt.Sprintf("user_%09d", i)
			ws = append(ws, usersync.Write{ID: fmt.Sprintf("id-%09d", i), Issuer: "https://bench.test", Subject: sub,
				TokenIdentifier: usersync.TokenIdentifier("https://bench.test", sub), Version: 1,
				Fields:  usersync.FieldName | usersync.FieldEmail | usersync.FieldEmailVerified,
				Profile: usersync.Profile{Name: "User " + sub, Email: sub + "@example.com", EmailVerified: true}, At: time.Now()})
		}
		if _, _, err := s.UpsertBatch(context.Background(), ws); err != nil {
			b.Fatal(err)
		}
	}
}

// benchFields are the profile fields as the floors write them by hand:
// the columns of each, and its version column.
var benchFields = [][]string{
	{"name"}, {"given_name"}, {"family_name"}, {"email"}, {"email_verified"}, {"picture_url"},
	{"username"}, {"phone_number"}, {"external_id"}, {"last_sign_in_at"}, {"metadata"},
}

// BenchmarkSQL compares sqlstore lookups and upserts with hand-written
// prepared statements doing the same work on the same table.
func BenchmarkSQL(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends[:2] { // SQLite and PostgreSQL
		for _, n := range benchSizes() {
			b.Run(fmt.Sprintf("%s/n=%d", be.Name, n), func(b *testing.B) {
				be.SkipIfUnset(b)
				db, table := be.Open(b)
				s := be.StoreOn(b, db, table)
				bulkLoad(b, s, n)
				// settle puts the database in the same state before each
				// sub-benchmark, so that none pays for its predecessor's
				// writes (SQLite's WAL, PostgreSQL's dead tuples).
				settle := func() {
					q := "VACUUM ANALYZE " + table
					if be.Dialect == sqlstore.SQLite {
						q = "PRAGMA wal_checkpoint(TRUNCATE)"
					}
					if _, err := db.Exec(q); err != nil {
						b.Fatal(err)
					}
				}
				subjects, keys := make([]string, 4096), make([]string, 4096)
				for i := range keys {
					subjects[i] = fmt.Sprintf("user_%09d", (i*7919)%n)
					keys[i] = usersync.TokenIdentifier("https://bench.test", subjects[i])
				}
				ph := func(i int) string {
					if be.Dialect == sqlstore.Postgres {
						return fmt.Sprintf("$%d", i)
					}
					return "?"
				}
				var values, versions []string
				for _, f := range benchFields {
					values = append(values, f...)
					versions = append(versions, f[0]+"_version")
				}
				cols := "id, token_identifier, issuer, subject, " + strings.Join(values, ", ") + ", version, created_at, updated_at, deleted_at"
				// The floors scan into plain Go values: times and metadata
				// as the driver hands them over.
				dest := make([]any, 4+len(values)+4)
				var str [32]string
				var verified bool
				var version int64
				var raw [8]any
				for i := range dest {
					dest[i] = &str[i]
				}
				dest[4+4] = &verified                    // email_verified
				dest[4+9], dest[4+10] = &raw[0], &raw[1] // last_sign_in_at, metadata
				dest[len(dest)-4] = &version             // version
				for i := 3; i > 0; i-- {
					dest[len(dest)-i] = &raw[1+i] // created_at, updated_at, deleted_at
				}
				floorGet, err := db.Prepare(fmt.Sprintf("SELECT %s FROM %s WHERE token_identifier = %s", cols, table, ph(1)))
				if err != nil {
					b.Fatal(err)
				}
				defer floorGet.Close()
				settle()
				b.Run("lookup/floor", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if err := floorGet.QueryRow(keys[i%len(keys)]).Scan(dest...); err != nil {
							b.Fatal(err)
						}
					}
				})
				settle()
				b.Run("lookup/sqlstore", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if _, err := s.GetByTokenIdentifier(ctx, keys[i%len(keys)]); err != nil {
							b.Fatal(err)
						}
					}
				})
				// The floor upsert: the same per-field ON CONFLICT statement
				// that sqlstore runs, written out by hand.
				var set, newer []string
				for _, f := range benchFields {
					v := f[0] + "_version"
					cond := fmt.Sprintf("excluded.%s > %s.%s", v, table, v)
					newer = append(newer, cond)
					for _, c := range append(f, v) {
						set = append(set, fmt.Sprintf("%s = CASE WHEN %s THEN excluded.%s ELSE %s.%s END", c, cond, c, table, c))
					}
				}
				insertCols := "id, token_identifier, issuer, subject, " + strings.Join(values, ", ") + ", " + strings.Join(versions, ", ") + ", version, created_at, updated_at, deleted_at, change_count"
				var phs []string
				for i := 1; i <= 4+2*len(benchFields)+5; i++ {
					phs = append(phs, ph(i))
				}
				floorUp, err := db.Prepare(fmt.Sprintf(`INSERT INTO %[1]s (%[2]s)
					VALUES (%[3]s) ON CONFLICT (token_identifier) DO UPDATE SET %[4]s,
					version = CASE WHEN excluded.version > %[1]s.version THEN excluded.version ELSE %[1]s.version END,
					updated_at = excluded.updated_at, change_count = %[1]s.change_count + 1
					WHERE %[1]s.deleted_at IS NULL AND (%[5]s)
					RETURNING %[6]s`,
					table, insertCols, strings.Join(phs, ", "), strings.Join(set, ", "), strings.Join(newer, " OR "), cols))
				if err != nil {
					b.Fatal(err)
				}
				defer floorUp.Close()
				var now any = time.Now().UTC()
				if be.Dialect == sqlstore.SQLite {
					now = time.Now().UnixMilli()
				}
				version = 10
				settle()
				b.Run("upsert/floor", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						version++
						args := []any{"new-id", keys[i%len(keys)], "https://bench.test", subjects[i%len(keys)],
							fmt.Sprint("Name ", version), "", "", "", false, "", "", "", "", nil, nil,
							version, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, version, now, now, nil, 1}
						if err := floorUp.QueryRow(args...).Scan(dest...); err != nil {
							b.Fatal(err)
						}
					}
				})
				settle()
				b.Run("upsert/sqlstore", func(b *testing.B) {
					b.ReportAllocs()
					at := time.Now()
					for i := 0; b.Loop(); i++ {
						version++
						if _, o, err := s.Upsert(ctx, usersync.Write{ID: "new-id", TokenIdentifier: keys[i%len(keys)], Issuer: "https://bench.test", Subject: subjects[i%len(keys)],
							Version: usersync.Version(version), Fields: usersync.FieldName, Profile: usersync.Profile{Name: fmt.Sprint("Name ", version)}, At: at}); err != nil || o != usersync.Updated {
							b.Fatal(o, err)
						}
					}
				})
				if be.Dialect == sqlstore.Postgres {
					settle()
					b.Run("upsert/sqlstore/parallel", func(b *testing.B) {
						b.ReportAllocs()
						b.SetParallelism(8)
						var seq, ver = make(chan int, 1), int64(1 << 40)
						seq <- 0
						at := time.Now()
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								i := <-seq
								seq <- i + 1
								if _, _, err := s.Upsert(ctx, usersync.Write{ID: "new-id", TokenIdentifier: keys[i%len(keys)], Issuer: "https://bench.test", Subject: subjects[i%len(keys)],
									Version: usersync.Version(ver + int64(i)), Fields: usersync.FieldName, Profile: usersync.Profile{Name: "P"}, At: at}); err != nil {
									b.Error(err)
									return
								}
							}
						})
					})
				}
			})
		}
	}
}
