package clerk

import (
	"context"
	"time"

	"github.com/usersync/usersync"
)

// SetSleep replaces how l waits between attempts, so tests record the
// waits instead of sleeping them.
func SetSleep(l *UserList, sleep func(context.Context, time.Duration) error) { l.sleep = sleep }

// DecodePage decodes a page of GET /users as UserList.Page does.
func (p *Provider) DecodePage(body []byte) ([]usersync.Write, error) { return p.decodePage(body) }
