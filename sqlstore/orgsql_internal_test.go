package sqlstore

import (
	"encoding/json"
	"slices"
	"testing"
)

// The permissions column reads as encoding/json reads it, on its fast
// path and off it.
func TestPermissionsColumnReadsAsJSON(t *testing.T) {
	for _, in := range []string{`[]`, `["a"]`, `["org:read","org:write"]`, `["a\"b"]`, `["\u003cx\u003e"]`, `["",""]`, `[ "a" ]`, `["a",]`, `["a"`, `"a"`, `["é"]`} {
		var want []string
		werr := json.Unmarshal([]byte(in), &want)
		if len(want) == 0 {
			want = nil
		}
		var got permissionsColumn
		gerr := got.Scan([]byte(in))
		if (werr != nil) != (gerr != nil) || !slices.Equal([]string(got), want) {
			t.Errorf("%s: %q, %v; encoding/json %q, %v", in, got, gerr, want, werr)
		}
		if w := permissionsArg(want); werr == nil {
			var back permissionsColumn
			if err := back.Scan(w); err != nil || !slices.Equal([]string(back), want) {
				t.Errorf("%s: written %s, read %q, %v", in, w, back, err)
			}
		}
	}
}
