// Package metadata checks and normalises the JSON metadata of a profile
// into a form every store can hold.
package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of metadata that every store can hold: MariaDB refuses JSON
// nested 32 levels deep (MariaDB 10.11 accepts 31), PostgreSQL numbers
// beyond its numeric range (see number) and any NUL character.
const (
	maxMetadataLen   = 64 << 10
	maxMetadataDepth = 31
)

var (
	errTooDeep     = fmt.Errorf("is nested deeper than %d levels", maxMetadataDepth)
	errNUL         = errors.New("has a NUL character")
	errOutOfRange  = errors.New("has a number out of range")
	errNotOneValue = errors.New("is not one valid JSON value")
)

// Normalize returns m in a form every store can hold, or an error if it
// has none: one valid JSON value of at most 64
// KiB and 31 levels of nesting, whose numbers are finite float64s and
// whose strings hold no NUL character. Invalid UTF-8 and surrogate escapes
// (a lone \ud800, which JSON decoders accept and PostgreSQL refuses) are
// re-encoded as the value Go decodes, U+FFFD for what is not a character.
// Metadata needing no change is returned as is, without a copy or an
// allocation. A nil m stays nil.
func Normalize(m json.RawMessage) (json.RawMessage, error) {
	if m == nil {
		return nil, nil
	}
	if len(m) > maxMetadataLen {
		return nil, fmt.Errorf("metadata larger than %d bytes", maxMetadataLen)
	}
	reencode, err := scanJSON(m)
	if err != nil {
		return nil, fmt.Errorf("metadata %w", err)
	}
	if !reencode {
		return m, nil
	}
	dec := json.NewDecoder(bytes.NewReader(m))
	dec.UseNumber() // numbers keep their text: no precision is lost
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("metadata %w", errNotOneValue)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if len(out) > maxMetadataLen {
		// Re-encoding can grow it: an invalid byte becomes U+FFFD (three
		// bytes), a U+2028 the escape \u2028 (six).
		return nil, fmt.Errorf("metadata larger than %d bytes once re-encoded", maxMetadataLen)
	}
	return out, nil
}

// scanJSON checks that m is one JSON value within the limits, in one pass
// that allocates nothing (encoding/json's Valid is several times slower,
// and metadata is checked on every write, by the Syncer or the store).
// It reports whether m must be re-encoded: invalid UTF-8, or a surrogate
// escape.
func scanJSON(m []byte) (reencode bool, err error) {
	s := jsonScanner{b: m, reencode: !utf8.Valid(m)}
	if err := s.value(0); err != nil {
		return false, err
	}
	if s.space(); s.i != len(s.b) {
		return false, errNotOneValue
	}
	return s.reencode, nil
}

// jsonScanner is a recursive-descent JSON checker (RFC 8259).
type jsonScanner struct {
	b        []byte
	i        int
	reencode bool
}

func (s *jsonScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte, or 0 at the end.
func (s *jsonScanner) next() byte {
	if s.space(); s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) value(depth int) error {
	switch c := s.next(); {
	case c == '{' || c == '[':
		if depth++; depth > maxMetadataDepth {
			return errTooDeep
		}
		closing := byte(']')
		if c == '{' {
			closing = '}'
		}
		s.i++
		if s.next() == closing {
			s.i++
			return nil
		}
		for {
			if c == '{' {
				if s.next() != '"' {
					return errNotOneValue
				}
				if err := s.str(); err != nil {
					return err
				}
				if s.next() != ':' {
					return errNotOneValue
				}
				s.i++
			}
			if err := s.value(depth); err != nil {
				return err
			}
			switch s.next() {
			case ',':
				s.i++
			case closing:
				s.i++
				return nil
			default:
				return errNotOneValue
			}
		}
	case c == '"':
		return s.str()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return errNotOneValue
}

func (s *jsonScanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return errNotOneValue
	}
	s.i += len(lit)
	return nil
}

// str checks a string, the scanner at its opening quote.
func (s *jsonScanner) str() error {
	b := s.b
	for s.i++; s.i < len(b); s.i++ {
		switch c := b[s.i]; {
		case c == '"':
			s.i++
			return nil
		case c < 0x20:
			return errNotOneValue // a control character must be escaped
		case c == '\\':
			if s.i++; s.i >= len(b) {
				return errNotOneValue
			}
			switch b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if s.i+4 >= len(b) {
					return errNotOneValue
				}
				hex := b[s.i+1 : s.i+5]
				for _, h := range hex {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return errNotOneValue
					}
				}
				if string(hex) == "0000" {
					return errNUL
				}
				if (hex[0] == 'd' || hex[0] == 'D') && strings.IndexByte("89abcdefABCDEF", hex[1]) >= 0 {
					s.reencode = true // a surrogate: let the decoder judge the pair
				}
				s.i += 4
			default:
				return errNotOneValue
			}
		}
	}
	return errNotOneValue
}

// Bounds of the numbers PostgreSQL's numeric (and so jsonb) holds: at most
// maxScale digits after the point once the exponent is applied, and an
// exponent below maxExponent either way.
const (
	maxScale    = 16383
	maxExponent = math.MaxInt32 / 2 // refused from here on, either way
)

// number checks a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
// and that every store holds it: a finite float64 (MySQL's JSON holds
// doubles) that is not a non-zero value rounded to 0, within PostgreSQL's
// numeric range (1e-16384 and 0e-20000 are finite float64s that
// PostgreSQL refuses).
func (s *jsonScanner) number() error {
	b, start := s.b, s.i
	nonZero := false
	digits := func() int {
		n := 0
		for s.i < len(b) && b[s.i] >= '0' && b[s.i] <= '9' {
			nonZero = nonZero || b[s.i] != '0'
			s.i++
			n++
		}
		return n
	}
	if b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(b) && b[s.i] == '0':
		s.i++
	case digits() == 0:
		return errNotOneValue
	}
	fraction := 0
	if s.i < len(b) && b[s.i] == '.' {
		s.i++
		if fraction = digits(); fraction == 0 {
			return errNotOneValue
		}
	}
	exponent, exp := false, 0
	if s.i < len(b) && (b[s.i] == 'e' || b[s.i] == 'E') {
		exponent = true
		negative := false
		if s.i++; s.i < len(b) && (b[s.i] == '+' || b[s.i] == '-') {
			negative = b[s.i] == '-'
			s.i++
		}
		from := s.i
		for s.i < len(b) && b[s.i] >= '0' && b[s.i] <= '9' {
			exp = min(exp*10+int(b[s.i]-'0'), maxExponent) // saturates
			s.i++
		}
		if s.i == from {
			return errNotOneValue
		}
		if negative {
			exp = -exp
		}
	}
	if exp >= maxExponent || exp <= -maxExponent || fraction-exp > maxScale {
		return errOutOfRange
	}
	// Only an exponent, or more digits than a float64 spans, can leave
	// its range.
	if exponent || s.i-start > 300 {
		f, err := strconv.ParseFloat(string(b[start:s.i]), 64)
		if err != nil || math.IsInf(f, 0) || f == 0 && nonZero {
			return errOutOfRange
		}
	}
	return nil
}
