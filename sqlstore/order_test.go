package sqlstore

import (
	"fmt"
	"strings"
	"testing"
)

// TestOrder: ids from several Galera nodes interleave, so a batch sorted
// by id may hold a user's changes out of their order; each user's changes
// take that user's places in the order of user_seq, and the other users'
// changes stay where they are.
func TestOrder(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"a1 b1 a2 b2", "a1 b1 a2 b2"},
		{"a2 b1 a1", "a1 b1 a2"},
		{"a3 b2 a1 c1 a2 b1", "a1 b1 a2 c1 a3 b2"},
		{"x1", "x1"},
		{"", ""},
	} {
		var batch []unsequenced
		for i, f := range strings.Fields(tc.in) {
			var seq int64
			fmt.Sscanf(f[1:], "%d", &seq)
			batch = append(batch, unsequenced{id: int64(i), user: f[:1], userSeq: seq})
		}
		order(batch)
		got := ""
		for i, c := range batch {
			if i > 0 {
				got += " "
			}
			got += fmt.Sprintf("%s%d", c.user, c.userSeq)
		}
		if got != tc.want {
			t.Errorf("order(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
