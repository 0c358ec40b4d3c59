package jwtverify_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/usersynctest"
)

// A JWKS that is down from the start makes tokens uncheckable, which is
// ErrKeysUnavailable (503), not ErrInvalidToken (401); once it answers
// again, tokens verify as soon as the backoff of the failed fetches (at
// most 4s) has passed. The backoff runs on the verifier's clock, which the
// test moves on: nothing depends on how fast the machine is.
func TestVerifyKeysUnavailableThenRecovered(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	a.SetJWKSMode(usersynctest.JWKS500)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
		c.UnknownKeyWait = time.Minute // a due fetch is always waited for
	}, a)
	tok := a.Token(nil)
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, usersync.ErrKeysUnavailable) || errors.Is(err, usersync.ErrInvalidToken) {
			t.Fatalf("JWKS down: err = %v, want ErrKeysUnavailable only", err)
		}
	}
	a.SetJWKSMode(usersynctest.JWKSOK)
	// A background retry that the JWKS answered before it came back may
	// still end in a failure, and back off once more: so two rounds.
	for round := 1; ; round++ {
		clock.Add(int64(4 * time.Second)) // the longest backoff
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			break
		}
		if !errors.Is(err, usersync.ErrKeysUnavailable) {
			t.Fatalf("while recovering: %v", err)
		}
		if round == 2 {
			t.Fatalf("still %v after the JWKS came back and %d backoffs passed", err, round)
		}
	}
}

// An unreachable JWKS (connection refused) is ErrKeysUnavailable too.
func TestVerifyKeysUnreachable(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL
	srv.Close()
	v := newVerifier(t, func(c *jwtverify.Config) { c.Issuers[0].JWKSURL = dead + "/jwks.json" }, a)
	if _, err := v.Verify(context.Background(), a.Token(nil)); !errors.Is(err, usersync.ErrKeysUnavailable) {
		t.Fatalf("err = %v, want ErrKeysUnavailable", err)
	}
}

// During an outage, tokens signed with known keys keep verifying, and a
// token with an unknown kid (perhaps a rotation the outage hides) cannot
// be checked: 503, not 401.
func TestVerifyUnknownKidDuringOutage(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.CacheSize = -1
		c.RefreshInterval = 20 * time.Millisecond
		c.UnknownKeyWait = 100 * time.Millisecond
	}, a)
	old := a.Token(nil)
	a.SetJWKSMode(usersynctest.JWKS500)
	waitFetches(t, a, a.Fetches()+2)
	a.Rotate()
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatalf("known key during the outage: %v", err)
	}
	if _, err := v.Verify(context.Background(), a.Token(nil)); !errors.Is(err, usersync.ErrKeysUnavailable) {
		t.Fatalf("unknown kid during the outage: err = %v, want ErrKeysUnavailable", err)
	}
}

// New fetches its issuers' keys in parallel and waits at most
// StartupWait, however many issuers hang.
func TestNewVerifierDoesNotBlockOnHangingIssuers(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	var issuers []jwtverify.Issuer
	for i := range 8 {
		name := fmt.Sprint("i", i)
		issuers = append(issuers, jwtverify.Issuer{URL: "https://" + name + ".example", JWKSURL: hang.URL + "/" + name})
	}
	// Without StartupWait, New would wait for the client's hour-long
	// timeout: any bound far below that tells the two apart.
	start := time.Now()
	v, err := jwtverify.New(context.Background(), jwtverify.Config{
		Issuers: issuers, StartupWait: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		HTTPClient: &http.Client{Timeout: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("New took %v with 8 hanging issuers and a 300ms StartupWait", d)
	}
}

// waitFetches waits until the issuer has answered n JWKS requests. The
// deadline only ends a test that would otherwise hang: it is no bound on
// the code's speed.
func waitFetches(t *testing.T, i *usersynctest.Issuer, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for i.Fetches() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d JWKS fetches, want %d", i.Fetches(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gateTransport makes JWKS requests (through http.DefaultTransport) and
// counts them. While the gate is shut, a request waits at it until the
// gate opens or the request's context ends: a JWKS that does not answer
// until the test says so.
type gateTransport struct {
	// linger is how long a held request whose context ended takes to
	// return, as a slow network would: it makes a caller that does not
	// wait for its requests visible.
	linger time.Duration

	held chan struct{} // a request is waiting at the gate

	mu       sync.Mutex
	gate     chan struct{} // nil: open
	started  int           // requests made
	inFlight int           // requests not returned yet
}

func newGateTransport(t *testing.T) *gateTransport {
	g := &gateTransport{held: make(chan struct{}, 1)}
	t.Cleanup(g.open) // a verifier's Close ends held requests anyway
	return g
}

// shut makes the requests from now on wait.
func (g *gateTransport) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate == nil {
		g.gate = make(chan struct{})
	}
}

// open lets the waiting requests, and all after them, through.
func (g *gateTransport) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

// counts returns how many requests were made, and how many have not
// returned yet.
func (g *gateTransport) counts() (started, inFlight int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started, g.inFlight
}

// waitHeld waits until a request is waiting at the gate. The deadline only
// ends a test that would otherwise hang.
func (g *gateTransport) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-g.held:
	case <-time.After(time.Minute):
		t.Fatal("no JWKS request came to the gate")
	}
}

func (g *gateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	g.started++
	g.inFlight++
	gate := g.gate
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	if gate != nil {
		select {
		case g.held <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-r.Context().Done():
			time.Sleep(g.linger)
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// A key rotation seen by many requests at once: one fetch, and every one
// of them verifies once it has ended. The fetch is held until every
// request has been started, so that they find it under way and join it.
func TestVerifyConcurrentRotation(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	gate := newGateTransport(t)
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.CacheSize = -1
		c.UnknownKeyWait = time.Minute // the requests wait for the held fetch
		c.HTTPClient = &http.Client{Transport: gate, Timeout: time.Minute}
	}, a)
	gate.shut()
	a.Rotate()
	before := a.Fetches()
	startedBefore, _ := gate.counts()
	var wg, started sync.WaitGroup
	var failed atomic.Int32
	for i := range 10 {
		tok := a.Token(map[string]any{"sub": fmt.Sprint("user_", i)})
		started.Add(1)
		wg.Go(func() {
			started.Done()
			if _, err := v.Verify(context.Background(), tok); err != nil {
				failed.Add(1)
				t.Logf("Verify: %v", err)
			}
		})
	}
	gate.waitHeld(t)
	started.Wait()
	gate.open()
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 10 tokens of the new key failed", n)
	}
	if n, _ := gate.counts(); n-startedBefore != 1 {
		t.Fatalf("%d JWKS requests for one rotation, want 1", n-startedBefore)
	}
	if n := a.Fetches() - before; n != 1 {
		t.Fatalf("%d fetches for one rotation, want 1", n)
	}
}

// A JWKS slower than UnknownKeyWait cannot tell whether a new kid is
// good: 503, not 401. The JWKS here does not answer at all until the test
// ends, so the request can only have returned by giving up its wait.
func TestVerifySlowJWKSIsUnavailable(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	gate := newGateTransport(t)
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.CacheSize = -1
		c.UnknownKeyWait = 100 * time.Millisecond
		c.HTTPClient = &http.Client{Transport: gate, Timeout: time.Minute}
	}, a)
	gate.shut()
	a.Rotate()
	if _, err := v.Verify(context.Background(), a.Token(nil)); !errors.Is(err, usersync.ErrKeysUnavailable) {
		t.Fatalf("err = %v, want ErrKeysUnavailable", err)
	}
}

// Clerk's "JWT public key" often arrives from a .env file as one line, or
// with literal \n: both work.
func TestVerifyPublicKeyPEMForms(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	pemText := a.PublicKeyPEM()
	oneLine := strings.ReplaceAll(pemText, "\n", "")
	escaped := strings.ReplaceAll(pemText, "\n", `\n`)
	for name, key := range map[string]string{"wrapped": pemText, "one line": oneLine, "literal \\n": escaped} {
		v := newVerifier(t, func(c *jwtverify.Config) { c.Issuers[0].PublicKeyPEM = key }, a)
		if _, err := v.Verify(context.Background(), a.Token(nil)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
