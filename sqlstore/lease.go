package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/usersync/usersync"
)

// Leases (migration 3, <table>_leases): one replica at a time holds a
// lease of a name until it expires; a lease row stays when released
// (expires_at 0), keeping its cursor for the next holder. Expiry times are
// Unix milliseconds of the replicas' clocks.

// checkLease checks the name and holder of a lease.
func checkLease(name, holder string) error {
	for _, v := range []string{name, holder} {
		if v == "" || len(v) > 255 || !storable(v) {
			return fmt.Errorf("%w: a lease name and holder are 1 to 255 bytes of UTF-8 without NUL", usersync.ErrInvalid)
		}
	}
	return nil
}

// LeaseCursors implements lease.Store.
func (s *Store) LeaseCursors(ctx context.Context, prefix string) (cursors map[string]int64, err error) {
	ctx, op := s.tel.start(ctx, opLeaseCursors)
	defer op.finish(ctx, &err)
	if !storable(prefix) {
		return map[string]int64{}, ctx.Err()
	}
	st, err := s.stmt(ctx, s.sql.leaseCursors)
	if err != nil {
		return nil, err
	}
	args := s.dialect.leasePrefix(prefix)
	var out map[string]int64
	attempts, err := s.try(ctx, func() error {
		out = map[string]int64{}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var cursor int64
			if err := rows.Scan(&name, &cursor); err != nil {
				return err
			}
			out[name] = cursor
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.wrapN("read the leases", attempts, err)
	}
	return out, nil
}

// AcquireLease implements lease.Store.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (cursor int64, ok bool, err error) {
	ctx, op := s.tel.start(ctx, opAcquireLease)
	defer op.finish(ctx, &err)
	if err := checkLease(name, holder); err != nil {
		return 0, false, err
	}
	now := time.Now()
	expires, at := now.Add(ttl).UnixMilli(), now.UnixMilli()
	attempts, err := s.try(ctx, func() (err error) {
		cursor, ok, err = s.dialect.acquire(s, ctx, name, holder, expires, at)
		return err
	})
	if err != nil {
		return 0, false, s.wrapN("acquire lease", attempts, err)
	}
	return cursor, ok, nil
}

// RenewLease implements lease.Store.
func (s *Store) RenewLease(ctx context.Context, name, holder string, ttl time.Duration, cursor int64) (ok bool, err error) {
	ctx, op := s.tel.start(ctx, opRenewLease)
	defer op.finish(ctx, &err)
	if err := checkLease(name, holder); err != nil {
		return false, err
	}
	attempts, err := s.try(ctx, func() error {
		res, err := s.db.ExecContext(ctx, s.sql.renew, time.Now().Add(ttl).UnixMilli(), cursor, name, holder)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		ok, err = s.dialect.renewed(s, ctx, name, holder, n)
		return err
	})
	if err != nil {
		return false, s.wrapN("renew lease", attempts, err)
	}
	return ok, nil
}

// ReleaseLease implements lease.Store.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) (err error) {
	ctx, op := s.tel.start(ctx, opReleaseLease)
	defer op.finish(ctx, &err)
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
