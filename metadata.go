package usersync

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// validateMetadata checks that a profile's metadata is JSON every store
// can hold.
func validateMetadata(m json.RawMessage) error {
	switch {
	case m == nil:
		return nil
	case !json.Valid(m):
		return fmt.Errorf("%w: metadata is not valid JSON", ErrInvalid)
	case bytes.Contains(m, []byte(`\u0000`)):
		// No SQL text type stores NUL (PostgreSQL refuses it even as
		// \u0000 in JSONB).
		return fmt.Errorf("%w: NUL character in metadata", ErrInvalid)
	}
	return nil
}
