package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/usersync/usersync"
)

// checkLease checks the name and holder of a lease.
func checkLease(name, holder string) error {
	for _, v := range []string{name, holder} {
		if v == "" || len(v) > 255 || !storable(v) {
			return fmt.Errorf("%w: a lease name and holder are 1 to 255 bytes of UTF-8 without NUL", usersync.ErrInvalid)
		}
	}
	return nil
}

// acquireLease implements the AcquireLease of usersync.Store.
func (s *Store) acquireLease(ctx context.Context, name, holder string, ttl time.Duration) (cursor int64, ok bool, err error) {
	if err := checkLease(name, holder); err != nil {
		return 0, false, err
	}
	now := time.Now()
	expires, at := now.Add(ttl).UnixMilli(), now.UnixMilli()
	attempts, err := s.try(ctx, func() error {
		if s.dialect.returning {
			err := s.db.QueryRowContext(ctx, s.sql.acquire, name, holder, expires, at).Scan(&cursor)
			if errors.Is(err, sql.ErrNoRows) { // held by another
				cursor, ok = 0, false
				return nil
			}
			ok = err == nil
			return err
		}
		if _, err := s.db.ExecContext(ctx, s.sql.acquire, name, holder, expires, at); err != nil {
			return err
		}
		var h string
		if err := s.db.QueryRowContext(ctx, s.sql.holder, name).Scan(&h, &cursor); err != nil {
			return err
		}
		ok = h == holder
		return nil
	})
	if err != nil {
		return 0, false, s.wrapN("acquire lease", attempts, err)
	}
	return cursor, ok, nil
}

// renewLease implements the RenewLease of usersync.Store.
func (s *Store) renewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (bool, error) {
	if err := checkLease(name, holder); err != nil {
		return false, err
	}
	var ok bool
	attempts, err := s.try(ctx, func() error {
		res, err := s.db.ExecContext(ctx, s.sql.renew, time.Now().Add(ttl).UnixMilli(), cursor, name, holder)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if ok = n == 1; ok || s.dialect.returning {
			return nil
		}
		// MySQL counts a row whose values did not change as 0: ask.
		var h string
		var c int64
		err = s.db.QueryRowContext(ctx, s.sql.holder, name).Scan(&h, &c)
		ok = err == nil && h == holder
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
		return err
	})
	if err != nil {
		return false, s.wrapN("renew lease", attempts, err)
	}
	return ok, nil
}

// releaseLease implements the ReleaseLease of usersync.Store.
func (s *Store) releaseLease(ctx context.Context, name, holder string) error {
	if err := checkLease(name, holder); err != nil {
		return err
	}
	attempts, err := s.try(ctx, func() error {
		_, err := s.db.ExecContext(ctx, s.sql.release, name, holder)
		return err
	})
	if err != nil {
		return s.wrapN("release lease", attempts, err)
	}
	return nil
}
