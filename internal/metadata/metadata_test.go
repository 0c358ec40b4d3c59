package metadata

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNormalizeMetadata(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	tests := []struct {
		name, in, want string // want "" for an error
	}{
		{"object", `{"plan":"pro","n":[1,2.5,-3e2]}`, `{"plan":"pro","n":[1,2.5,-3e2]}`},
		{"kept as is, spaces and all", `{ "b": 1, "a": 2 }`, `{ "b": 1, "a": 2 }`},
		{"escaped backslash then u0000 is no NUL", `{"a":"\\u0000"}`, `{"a":"\\u0000"}`},
		{"escaped quote in a string", `{"a":"say \"\\ud800\""}`, `{"a":"say \"\\ud800\""}`},
		{"lone high surrogate", `{"a":"\ud800"}`, "{\"a\":\"\ufffd\"}"},
		{"lone low surrogate", `["\udfff"]`, "[\"\ufffd\"]"},
		{"surrogate pair", `"\ud83d\ude00"`, `"😀"`},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "{\"a\":\"\ufffd\"}"},
		{"big integers keep every digit when re-encoded", "[12345678901234567890123, \"\xff\"]", "[12345678901234567890123,\"\ufffd\"]"},
		{"31 levels", deep(31), deep(31)},
		{"32 levels", deep(32), ""},
		{"NUL", `{"a":"x\u0000"}`, ""},
		{"NUL in a key", `{"\u0000":1}`, ""},
		{"number out of range", `[1e309]`, ""},
		{"negative number out of range", `[-1e400]`, ""},
		{"a long number in range", "[" + strings.Repeat("9", 300) + "]", "[" + strings.Repeat("9", 300) + "]"},
		{"a longer number out of range", "[" + strings.Repeat("9", 400) + "]", ""},
		// PostgreSQL's numeric holds at most 16,383 digits after the point
		// once the exponent is applied: these are finite float64s that
		// PostgreSQL refuses (22003).
		{"a tiny number PostgreSQL refuses", `{"n":1e-16384}`, ""},
		{"a zero PostgreSQL refuses", `{"n":0e-20000}`, ""},
		{"a zero with a fraction PostgreSQL refuses", `{"n":0.0e-16383}`, ""},
		{"a scale PostgreSQL refuses", `{"n":123456789e-16391}`, ""},
		{"a fraction too long for PostgreSQL", "[0." + strings.Repeat("0", 16383) + "1]", ""},
		{"a fraction PostgreSQL holds that a double rounds to 0", "[0." + strings.Repeat("0", 16382) + "1e-0]", ""},
		{"an exponent beyond PostgreSQL's", `[0e99999999999999999999]`, ""},
		{"the first exponent PostgreSQL refuses", `[0e1073741823]`, ""},
		{"the last exponent PostgreSQL takes", `[0e1073741822]`, `[0e1073741822]`},
		{"a non-zero number rounded to 0", `[1e-400]`, ""},
		{"the smallest scale PostgreSQL holds", `[0e-16383]`, `[0e-16383]`},
		{"a large exponent of 0", `[0e+99999]`, `[0e+99999]`},
		{"a small number within range", `[2.5e-300]`, `[2.5e-300]`},
		{"a fraction with trailing zeros", "[1." + strings.Repeat("0", 1000) + "]", "[1." + strings.Repeat("0", 1000) + "]"},
		{"not JSON", `{"a":`, ""},
		{"two values", `1 2`, ""},
		{"too large", `"` + strings.Repeat("x", 64<<10) + `"`, ""},
		// Within the limit, but not once re-encoded: 0xff becomes U+FFFD
		// (three bytes), U+2028 the escape \u2028 (six bytes for three).
		{"too large once invalid UTF-8 is replaced", `"` + strings.Repeat("\xff", 30_000) + `"`, ""},
		{"too large once U+2028 is escaped", `"` + strings.Repeat("\u2028", 15_000) + "\xff" + `"`, ""},
		{"invalid UTF-8 replaced within the limit", `"` + strings.Repeat("\xff", 21_000) + `"`, `"` + strings.Repeat("\ufffd", 21_000) + `"`},
	}
	short := func(b []byte) string { // what an error shows of a value
		if len(b) > 80 {
			return fmt.Sprintf("%.80q... (%d bytes)", b, len(b))
		}
		return fmt.Sprintf("%q", b)
	}
	for _, tt := range tests {
		got, err := Normalize(json.RawMessage(tt.in))
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%s: %s, %v; want an error", tt.name, short(got), err)
		case tt.want != "" && (err != nil || string(got) != tt.want):
			t.Errorf("%s: %s, %v; want %s", tt.name, short(got), err, short([]byte(tt.want)))
		}
	}
}

// Metadata that needs no change costs no allocation: it is checked on
// every write.
func TestNormalizeMetadataDoesNotAllocate(t *testing.T) {
	m := json.RawMessage(`{"department":"engineering","plan":"pro","n":[1,2,3e5],"notes":"` + strings.Repeat("x", 900) + `"}`)
	if n := testing.AllocsPerRun(100, func() { Normalize(m) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzNormalizeMetadata(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":"\ud800"}`, `[1e309]`, `{"a":"\\u0000"}`, `"\ud83d\ude00"`, `{"a":[[[]]]}`, "\"\xff\"", `{"n":1e-16384}`, `{"n":0e-20000}`, `[0e-16383]`, `[-0.5E+3]`, `"` + strings.Repeat("\xff", 22_000) + `"`, `"` + strings.Repeat("\u2028", 11_000) + "\xff" + `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Normalize(in)
		if err != nil {
			return
		}
		// What it accepts is valid, within the limits, and stable.
		again, err := Normalize(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("normalizing %q gave %q, then %q, %v", in, out, again, err)
		}
	})
}

// The scanner agrees with encoding/json on what is JSON, whatever the
// input (within the limits, which encoding/json does not have).
func FuzzScanJSONAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,true,false,null,"x\n\u00e9"]}`, `{"a":}`, `[1,]`, `"\x01"`, `01`, `-`, `1.`, `1e`, ` [] `, `{"a" 1}`, `"\ud800"`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_, err := scanJSON(in)
		if valid := json.Valid(in); valid != (err == nil) && !errors.Is(err, errTooDeep) && !errors.Is(err, errNUL) && !errors.Is(err, errOutOfRange) {
			t.Fatalf("%q: json.Valid %v, scanJSON %v", in, valid, err)
		}
	})
}
