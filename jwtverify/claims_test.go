package jwtverify

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// numericDate reads every time claim as golang-jwt's NumericDate does:
// the same time, or an error for the same inputs.
func FuzzNumericDate(f *testing.F) {
	for _, s := range []string{"1700000000", "0", "-1", "1700000000.5", "1.7e9", `"1700000000"`, "null", "01", "-0", "999999999999999", "9999999999999999", "", "true", "1e400"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var got numericDate
		gotErr := got.UnmarshalJSON(in)
		if string(in) == "null" {
			if gotErr != nil || got.set {
				t.Fatalf("null: %+v, %v", got, gotErr)
			}
			return
		}
		var want jwt.NumericDate
		wantErr := want.UnmarshalJSON(in)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, golang-jwt's %v", in, gotErr, wantErr)
		}
		if gotErr == nil && (!got.set || !got.Equal(want.Time)) {
			t.Fatalf("%q: %v (set %v), golang-jwt's %v", in, got.Time, got.set, want.Time)
		}
	})
}
