package testdb

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync/atomic"
	"testing"
)

// flakyDriver refuses its first connections, as a server that restarts
// or whose backlog is full does for a moment.
type flakyDriver struct{ refusals atomic.Int32 }

func (d *flakyDriver) Open(string) (driver.Conn, error) {
	if d.refusals.Add(-1) >= 0 {
		return nil, errors.New("connection refused")
	}
	return conn{}, nil
}

type conn struct{}

func (conn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (conn) Close() error                        { return nil }
func (conn) Begin() (driver.Tx, error)           { return nil, errors.New("not supported") }

// A server that refuses the first connections does not fail the tests:
// Connect tries again until it answers.
func TestConnectRetriesATransientFailure(t *testing.T) {
	d := &flakyDriver{}
	d.refusals.Store(3)
	name := "testdb-flaky-" + RandomHex(4) // a driver registers once per name: -count above 1
	sql.Register(name, d)
	db, err := Connect(name, "")
	if err != nil {
		t.Fatalf("Connect after 3 refusals: %v", err)
	}
	defer db.Close()
	if left := d.refusals.Load(); left >= 0 {
		t.Fatalf("%d refusals left: Connect did not reach the server", left+1)
	}
}
