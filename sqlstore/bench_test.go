package sqlstore_test

import (
	"context"
	"database/sql"
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

// bulkLoad fills table with n users in large multi-row INSERTs.
func bulkLoad(b *testing.B, db *sql.DB, d sqlstore.Dialect, table string, n int) {
	const batch = 500
	ph := func(i int) string {
		if d == sqlstore.Postgres {
			return fmt.Sprintf("$%d", i)
		}
		return "?"
	}
	for start := 0; start < n; start += batch {
		var q strings.Builder
		fmt.Fprintf(&q, "INSERT INTO %s (id, token_identifier, issuer, subject, name, email, email_verified, picture_url, username, phone_number, metadata, name_version, email_version, picture_url_version, username_version, phone_number_version, metadata_version, version, created_at, updated_at) VALUES ", table)
		var args []any
		for i := start; i < min(start+batch, n); i++ {
			if i > start {
				q.WriteString(", ")
			}
			k := len(args)
			fmt.Fprintf(&q, "(%s, %s, %s, %s, %s, %s, %s, '', '', '', NULL, 1, 1, 0, 0, 0, 0, 1, 0, 0)", ph(k+1), ph(k+2), ph(k+3), ph(k+4), ph(k+5), ph(k+6), ph(k+7))
			sub := fmt.Sprintf("user_%09d", i)
			args = append(args, fmt.Sprintf("id-%09d", i), "https://bench.test|"+sub, "https://bench.test", sub, "User "+sub, sub+"@example.com", true)
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			b.Fatal(err)
		}
	}
	if d == sqlstore.Postgres {
		db.Exec("ANALYZE " + table)
	}
}

// floorRow is what the floors scan a user row into, as plain Go values.
type floorRowT struct {
	id, ti, iss, sub, name, email, pic, un, phone string
	ev                                            bool
	meta                                          []byte
	v, c, u                                       int64
	d                                             sql.NullInt64
}

func (r *floorRowT) dest() []any {
	return []any{&r.id, &r.ti, &r.iss, &r.sub, &r.name, &r.email, &r.ev, &r.pic, &r.un, &r.phone, &r.meta, &r.v, &r.c, &r.u, &r.d}
}

var floorRow floorRowT

// BenchmarkSQL compares sqlstore lookups and upserts with hand-written
// prepared statements doing the same work on the same table.
func BenchmarkSQL(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends[:2] { // SQLite and PostgreSQL
		for _, n := range benchSizes() {
			b.Run(fmt.Sprintf("%s/n=%d", be.name, n), func(b *testing.B) {
				be.skipIfUnset(b)
				db, table := be.open(b)
				s := be.storeOn(b, db, table)
				bulkLoad(b, db, be.dialect, table, n)
				// settle puts the database in the same state before each
				// sub-benchmark, so that none pays for its predecessor's
				// writes (SQLite's WAL, PostgreSQL's dead tuples).
				settle := func() {
					q := "VACUUM ANALYZE " + table
					if be.dialect == sqlstore.SQLite {
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
				at := time.Now()
				ph := func(i int) string {
					if be.dialect == sqlstore.Postgres {
						return fmt.Sprintf("$%d", i)
					}
					return "?"
				}
				floorGet, err := db.Prepare(fmt.Sprintf("SELECT id, token_identifier, issuer, subject, name, email, email_verified, picture_url, username, phone_number, metadata, version, created_at, updated_at, deleted_at FROM %s WHERE token_identifier = %s AND deleted_at IS NULL", table, ph(1)))
				if err != nil {
					b.Fatal(err)
				}
				defer floorGet.Close()
				settle()
				b.Run("lookup/floor", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if err := floorGet.QueryRow(keys[i%len(keys)]).Scan(floorRow.dest()...); err != nil {
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
				for _, f := range [][]string{{"name"}, {"email", "email_verified"}, {"picture_url"}, {"username"}, {"phone_number"}, {"metadata"}} {
					v := f[0] + "_version"
					cond := fmt.Sprintf("excluded.%s > %s.%s", v, table, v)
					newer = append(newer, cond)
					for _, c := range append(f, v) {
						set = append(set, fmt.Sprintf("%s = CASE WHEN %s THEN excluded.%s ELSE %s.%s END", c, cond, c, table, c))
					}
				}
				var phs []string
				for i := 1; i <= 21; i++ {
					phs = append(phs, ph(i))
				}
				floorUp, err := db.Prepare(fmt.Sprintf(`INSERT INTO %[1]s (id, token_identifier, issuer, subject, name, email, email_verified, picture_url, username, phone_number, metadata, name_version, email_version, picture_url_version, username_version, phone_number_version, metadata_version, version, created_at, updated_at, deleted_at)
					VALUES (%[2]s) ON CONFLICT (token_identifier) DO UPDATE SET %[3]s,
					version = CASE WHEN excluded.version > %[1]s.version THEN excluded.version ELSE %[1]s.version END,
					updated_at = excluded.updated_at
					WHERE %[1]s.deleted_at IS NULL AND (%[4]s)
					RETURNING id, token_identifier, issuer, subject, name, email, email_verified, picture_url, username, phone_number, metadata, version, created_at, updated_at, deleted_at`,
					table, strings.Join(phs, ", "), strings.Join(set, ", "), strings.Join(newer, " OR ")))
				if err != nil {
					b.Fatal(err)
				}
				defer floorUp.Close()
				version := int64(10)
				settle()
				b.Run("upsert/floor", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						version++
						if err := floorUp.QueryRow("new-id", keys[i%len(keys)], "https://bench.test", "x", fmt.Sprint("Name ", version), "", false, "", "", "", nil,
							version, int64(0), int64(0), int64(0), int64(0), int64(0), version, int64(0), int64(0), nil).Scan(floorRow.dest()...); err != nil {
							b.Fatal(err)
						}
					}
				})
				settle()
				b.Run("upsert/sqlstore", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						version++
						if _, o, err := s.Upsert(ctx, usersync.Write{ID: "new-id", TokenIdentifier: keys[i%len(keys)], Issuer: "https://bench.test", Subject: subjects[i%len(keys)],
							Version: usersync.Version(version), Fields: usersync.FieldName, Profile: usersync.Profile{Name: fmt.Sprint("Name ", version)}, At: at}); err != nil || o != usersync.Updated {
							b.Fatal(o, err)
						}
					}
				})
				if be.dialect == sqlstore.Postgres {
					settle()
					b.Run("upsert/sqlstore/parallel", func(b *testing.B) {
						b.ReportAllocs()
						b.SetParallelism(8)
						var seq, ver = make(chan int, 1), int64(1 << 40)
						seq <- 0
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
