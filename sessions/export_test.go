package sessions

import "time"

// SetPruneInterval makes the Sets made after it prune every d, about.
func SetPruneInterval(d time.Duration) { pruneInterval = d }
