package clerkfake

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/usersync/usersync/clerk"
)

// FuzzParseUsers feeds arbitrary users files: nothing panics, and what is
// accepted is a list of Clerk users with an ID and dates, which parses
// again to itself.
func FuzzParseUsers(f *testing.F) {
	file, err := os.ReadFile("testdata/users.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range [][]byte{
		file,
		[]byte(`[]`),
		[]byte(`[{"id":"user_a"}]`),
		[]byte(`[{"id":"user_a","created_at":0,"updated_at":null,"first_name":null}]`),
		[]byte(`[{"id":"user_a"},{"id":"user_a"}]`),
		[]byte(`[{"id":"user_a","deleted":true}]`),
		[]byte(`[{"id":"user_a","email_addresses":[{"id":"e","verification":null}],"primary_email_address_id":"x"}]`),
		[]byte(`[{"id":"user_a","public_metadata":{"a":[1,2,{"b":null}]},"updated_at":1e3}]`),
		[]byte(`{"id":"user_a"}`),
		[]byte(`null`),
		[]byte(``),
	} {
		f.Add(b)
	}
	const now = 1_750_000_000_000
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseUsers(data, now)
		if err != nil {
			return
		}
		var again bytes.Buffer
		again.WriteByte('[')
		for i, u := range users {
			var c clerk.User
			if err := json.Unmarshal(u.json, &c); err != nil {
				t.Fatalf("user #%d does not decode: %v: %s", i+1, err, u.json)
			}
			if c.ID != u.id || c.ID == "" || !validID(c.ID) || c.Object != "user" || c.Deleted ||
				c.CreatedAt != u.created || c.UpdatedAt != u.updated || u.created <= 0 || u.updated <= 0 {
				t.Fatalf("user #%d: %+v as %q %d %d", i+1, c, u.id, u.created, u.updated)
			}
			if i > 0 {
				again.WriteByte(',')
			}
			again.Write(u.json)
		}
		again.WriteByte(']')
		users2, err := parseUsers(again.Bytes(), now+1)
		if err != nil || len(users2) != len(users) {
			t.Fatalf("the parsed users do not parse again: %v", err)
		}
		for i := range users {
			if !bytes.Equal(users[i].json, users2[i].json) || users[i].created != users2[i].created || users[i].updated != users2[i].updated {
				t.Fatalf("user #%d parses to %s, then %s", i+1, users[i].json, users2[i].json)
			}
		}
	})
}
