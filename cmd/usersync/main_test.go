package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/clerk/clerktest"
	"github.com/usersync/usersync/internal/dburl"
	"github.com/usersync/usersync/internal/testdb"
	"github.com/usersync/usersync/reconcile"
	"github.com/usersync/usersync/sqlstore"
)

const issuer = "https://clerk.example.com"

// runCmd runs the command with env and returns its exit code, stdout and
// stderr.
func runCmd(env map[string]string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestReconcileCommand(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			url := b.DSN(t)
			switch b.Dialect {
			case sqlstore.MySQL:
				url = "mysql://" + url
			}
			api := clerktest.NewAPI(t)
			t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			for i := range 1200 {
				api.Put(clerktest.User{ID: fmt.Sprintf("user_%04d", i), FirstName: clerktest.Str("U"), CreatedAt: t0.Add(time.Duration(i) * time.Millisecond), UpdatedAt: t0.Add(time.Second)})
			}
			env := map[string]string{"DATABASE_URL": url, "CLERK_ISSUER": issuer, "CLERK_SECRET_KEY": api.SecretKey, "CLERK_API_URL": api.URL, "CLERK_JWT_KEY": api.PublicKeyPEM()}

			code, out, errOut := runCmd(env, "migrate")
			if code != 0 || !strings.Contains(out, "up to date") {
				t.Fatalf("migrate: %d %q %q", code, out, errOut)
			}
			code, out, errOut = runCmd(env, "reconcile")
			if code != 0 || !strings.Contains(out, "complete") || !strings.Contains(out, "created 1200,") {
				t.Fatalf("reconcile: %d %q %q", code, out, errOut)
			}
			// Not a terminal: a line when a page crosses a tenth, here
			// every page of 500.
			if n := strings.Count(errOut, "users/s"); n != 3 || !strings.Contains(errOut, "1200/1200 users") {
				t.Fatalf("%d progress lines:\n%s", n, errOut)
			}
			code, out, _ = runCmd(env, "reconcile", "-q")
			if code != 0 || !strings.Contains(out, "unchanged 1200,") {
				t.Fatalf("again: %d %q", code, out)
			}

			var gone []string
			for i := range 300 {
				gone = append(gone, fmt.Sprintf("user_%04d", i*4))
			}
			api.Remove(gone...)
			code, out, errOut = runCmd(env, "reconcile", "-q")
			if code != exitRefused || !strings.Contains(out, "refused to delete 300") || !strings.Contains(errOut, "-allow-mass-delete") {
				t.Fatalf("mass delete: %d %q %q", code, out, errOut)
			}
			code, out, errOut = runCmd(env, "reconcile", "-q", "-allow-mass-delete")
			if code != 0 || !strings.Contains(out, "deleted 300,") {
				t.Fatalf("allowed: %d %q %q", code, out, errOut)
			}

			// The secret key of another instance, whose users are others:
			// refused before a write, whether its keys are checked against
			// the issuer's or the instance check is passed by its own PEM
			// key (an operator who pasted both from the wrong dashboard).
			other := clerktest.NewAPI(t)
			for i := range 1000 {
				other.Put(clerktest.User{ID: fmt.Sprintf("user_other_%04d", i), CreatedAt: t0, UpdatedAt: t0})
			}
			wrong := maps.Clone(env)
			wrong["CLERK_SECRET_KEY"], wrong["CLERK_API_URL"] = other.SecretKey, other.URL
			code, out, errOut = runCmd(wrong, "reconcile", "-q")
			if code != exitRefused || !strings.Contains(errOut, "another instance") || !strings.Contains(errOut, issuer) || strings.Contains(out+errOut, other.SecretKey) {
				t.Fatalf("another instance's key: %d %q %q", code, out, errOut)
			}
			wrong["CLERK_JWT_KEY"] = other.PublicKeyPEM()
			code, out, errOut = runCmd(wrong, "reconcile", "-q", "-max-delete-share", "1")
			if code != exitRefused || !strings.Contains(errOut, "another instance") || !strings.Contains(out, "created 0,") {
				t.Fatalf("another instance's list: %d %q %q", code, out, errOut)
			}
			code, out, _ = runCmd(env, "reconcile", "-q")
			if code != 0 || !strings.Contains(out, "900 listed of 900") || !strings.Contains(out, "unchanged 900,") || !strings.Contains(out, "deleted 0,") {
				t.Fatalf("the real users after the wrong keys: %d %q", code, out)
			}
		})
	}
}

func TestCommandErrors(t *testing.T) {
	api := clerktest.NewAPI(t)
	db := t.TempDir() + "/app.db"
	// The app's own users table, which usersync must not touch.
	foreign := t.TempDir() + "/app.db"
	foreignDB, _, err := dburl.Open(foreign)
	if err != nil {
		t.Fatal(err)
	}
	_, err = foreignDB.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
	foreignDB.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no command", nil, nil, 2, "usage: usersync"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"bad flag", nil, []string{"reconcile", "-nope"}, 2, "flag provided but not defined"},
		{"stray argument", nil, []string{"migrate", "now"}, 2, "unexpected arguments"},
		{"no database", nil, []string{"migrate"}, 1, "DATABASE_URL is not set"},
		{"no secret key", map[string]string{"DATABASE_URL": db, "CLERK_ISSUER": issuer}, []string{"reconcile"}, 1, "CLERK_SECRET_KEY"},
		{"a bad table name", map[string]string{"DATABASE_URL": db}, []string{"migrate", "-table", "users;drop"}, 1, "-table or USERSYNC_TABLE"},
		{"a bad USERSYNC_TABLE", map[string]string{"DATABASE_URL": db, "USERSYNC_TABLE": "users;drop"}, []string{"migrate"}, 1, "-table or USERSYNC_TABLE"},
		{"a table usersync did not make", map[string]string{"DATABASE_URL": foreign}, []string{"migrate"}, 1, `-table or USERSYNC_TABLE: sqlite database: usersync: invalid argument: usersync/sqlstore: table users exists and was not made by usersync (it lacks usersync's columns): refusing to touch it; give usersync a table of its own (the store's Table), such as "clerk_users"`},
		{"a wrong secret key", map[string]string{"DATABASE_URL": db, "CLERK_ISSUER": issuer, "CLERK_SECRET_KEY": "sk_test_wrong", "CLERK_API_URL": api.URL, "CLERK_JWT_KEY": api.PublicKeyPEM()}, []string{"reconcile"}, 1, "answered 401"},
		{"the issuer's keys out of reach", map[string]string{"DATABASE_URL": db, "CLERK_ISSUER": issuer, "CLERK_SECRET_KEY": api.SecretKey, "CLERK_API_URL": api.URL, "CLERK_JWKS_URL": "http://127.0.0.1:1/jwks"}, []string{"reconcile"}, 1, "fetching the keys of the issuer"},
		{"a bad PEM key", map[string]string{"DATABASE_URL": db, "CLERK_ISSUER": issuer, "CLERK_SECRET_KEY": api.SecretKey, "CLERK_JWT_KEY": "nope"}, []string{"reconcile"}, 1, "CLERK_JWT_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d, want %d; output %q %q, want %q", code, tc.code, out, errOut, tc.want)
			}
			if strings.Contains(out+errOut, "sk_test_wrong") {
				t.Fatal("the output shows the secret key")
			}
			if strings.Contains(out+errOut, "sqlstore.Config") {
				t.Fatal("the output names a Go field, not the flag")
			}
		})
	}
}

// The table is -table, else USERSYNC_TABLE, else users.
func TestTableSetting(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"the default", "", nil, "users is up to date"},
		{"USERSYNC_TABLE", "clerk_users", nil, "clerk_users is up to date"},
		{"-table", "", []string{"-table", "app_users"}, "app_users is up to date"},
		{"-table over USERSYNC_TABLE", "clerk_users", []string{"-table", "app_users"}, "app_users is up to date"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": t.TempDir() + "/app.db", "USERSYNC_TABLE": tc.env}
			code, out, errOut := runCmd(env, append([]string{"migrate"}, tc.args...)...)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("%d %q %q, want %q", code, out, errOut, tc.want)
			}
		})
	}
	code, _, errOut := runCmd(nil, "migrate", "-h")
	if code != 0 || !strings.Contains(errOut, "-table") || !strings.Contains(errOut, "USERSYNC_TABLE") || strings.Contains(errOut, "sqlstore.Config") {
		t.Fatalf("migrate -h: %d %q", code, errOut)
	}
}

func TestBar(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, tc := range []struct {
		listed, total int
		want          string
	}{
		{0, 100, "[>                             ]   0% 0/100 users"},
		{45, 100, "[=============>                ]  45% 45/100 users"},
		{100, 100, "[==============================] 100% 100/100 users"},
		{120, 100, "[==============================] 100% 120/100 users"},
		{5, 0, "[==============================] 100% 5/0 users"},
	} {
		got := bar(reconcile.Report{Listed: tc.listed, Total: tc.total, Created: tc.listed, Started: start}, start.Add(2*time.Second))
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("bar(%d/%d) = %q, want prefix %q", tc.listed, tc.total, got, tc.want)
		}
	}
	if got := line(reconcile.Report{Listed: 500, Started: start}, start.Add(2*time.Second)); !strings.HasSuffix(got, "250 users/s") {
		t.Errorf("line = %q", got)
	}
}

// TestReconcileCommandOrganizations: after the users, reconcile imports
// and heals the instance's organizations and memberships under the same
// guard, and -orgs=false leaves them out.
func TestReconcileCommandOrganizations(t *testing.T) {
	api := clerktest.NewAPI(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	api.Put(clerktest.User{ID: "user_0000", FirstName: clerktest.Str("U"), CreatedAt: t0, UpdatedAt: t0})
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if err := api.Fake.PutOrganization(clerkfake.Organization{ID: fmt.Sprintf("org_%04d", i), Name: "Org", CreatedAt: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if err := api.Fake.PutMembership(clerkfake.Membership{OrganizationID: fmt.Sprintf("org_%04d", i), UserID: fmt.Sprintf("user_%04d", j), CreatedAt: at, UpdatedAt: at}); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := map[string]string{"DATABASE_URL": t.TempDir() + "/app.db", "CLERK_ISSUER": issuer, "CLERK_SECRET_KEY": api.SecretKey, "CLERK_API_URL": api.URL, "CLERK_JWT_KEY": api.PublicKeyPEM()}
	for _, tc := range []struct {
		name   string
		before func()
		args   []string
		code   int
		want   []string
		absent string
	}{
		{"the first import", nil, nil, 0, []string{"usersync reconcile: complete", "created 1,", "organizations complete", "30 listed; created 30,", "memberships: 90 listed; created 90,"}, ""},
		{"again: nothing changes", nil, nil, 0, []string{"organizations complete", "unchanged 30,", "memberships: 90 listed; created 0, updated 0, unchanged 90,"}, ""},
		{"without the organizations", func() { api.Fake.RemoveOrganization("org_0003") }, []string{"-orgs=false"}, 0, []string{"usersync reconcile: complete"}, "organizations"},
		{"a missed deletion", nil, nil, 0, []string{"organizations complete", "29 listed;", "deleted 1,"}, ""},
		{"a mass deletion, refused", func() {
			for i := 10; i < 30; i++ {
				api.Fake.RemoveOrganization(fmt.Sprintf("org_%04d", i))
			}
		}, nil, exitRefused, []string{"organizations incomplete: nothing deleted", "refused to delete 20 organizations", "-allow-mass-delete"}, ""},
		{"a mass deletion, allowed", nil, []string{"-allow-mass-delete"}, 0, []string{"organizations complete", "9 listed;", "deleted 20,"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			code, out, errOut := runCmd(env, append([]string{"reconcile", "-q"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %q %q", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out+errOut, w) {
					t.Fatalf("output %q %q, want %q", out, errOut, w)
				}
			}
			if tc.absent != "" && strings.Contains(out, tc.absent) {
				t.Fatalf("output %q has %q", out, tc.absent)
			}
		})
	}
}
