package jwtverify

import (
	"sync"
	"time"

	"github.com/usersync/usersync"
)

// tokenCache remembers verified tokens, keyed by their exact text, until
// they expire. It is bounded: when full it drops expired entries, then
// arbitrary ones.
type tokenCache struct {
	mu      sync.RWMutex
	max     int
	entries map[string]cached
}

// cached is a verified token's identity and the thumbprint of the key that
// verified it.
type cached struct {
	id  *usersync.Identity
	key string
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[string]cached)}
}

// get returns the identity of token if it was verified and has not expired
// by now.
func (c *tokenCache) get(token string, now time.Time) *usersync.Identity {
	c.mu.RLock()
	e := c.entries[token]
	c.mu.RUnlock()
	if e.id == nil || !now.Before(e.id.Expiry) {
		return nil
	}
	return e.id
}

// put remembers a verified token's identity and the thumbprint of its key.
func (c *tokenCache) put(token string, id *usersync.Identity, key string, now time.Time) {
	if !now.Before(id.Expiry) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.id.Expiry) {
				delete(c.entries, k)
			}
		}
		// Still full of live tokens: drop a tenth, at random (map order is
		// random), so that the next puts do not sweep again.
		for k := range c.entries {
			if len(c.entries) < c.max-c.max/10 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[token] = cached{id, key}
}

// removeKeys forgets the tokens of issuer verified with any of the keys
// of the given thumbprints: keys a refresh of the issuer's JWKS no longer
// lists (a rotation that removed them, a revocation, or a kid that now
// names another key). A token is tied to the key that verified it, not to
// its kid: a token without one is forgotten with its key too.
func (c *tokenCache) removeKeys(issuer string, thumbprints []string) {
	gone := make(map[string]bool, len(thumbprints))
	for _, t := range thumbprints {
		gone[t] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for token, e := range c.entries {
		if e.id.Issuer == issuer && gone[e.key] {
			delete(c.entries, token)
		}
	}
}

// remove forgets one token.
func (c *tokenCache) remove(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, token)
}
