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
// again, tokens verify within a few seconds.
func TestVerifyKeysUnavailableThenRecovered(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	a.SetJWKSMode(usersynctest.JWKS500)
	v := newVerifier(t, func(c *jwtverify.Config) { c.UnknownKeyWait = 100 * time.Millisecond }, a)
	tok := a.Token(nil)
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, usersync.ErrKeysUnavailable) || errors.Is(err, usersync.ErrInvalidToken) {
			t.Fatalf("JWKS down: err = %v, want ErrKeysUnavailable only", err)
		}
	}
	a.SetJWKSMode(usersynctest.JWKSOK)
	start := time.Now()
	for {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			break
		}
		if !errors.Is(err, usersync.ErrKeysUnavailable) {
			t.Fatalf("while recovering: %v", err)
		}
		if time.Since(start) > 6*time.Second {
			t.Fatalf("still %v %v after the JWKS came back", err, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("verified %v after the JWKS came back", time.Since(start).Round(time.Millisecond))
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
	start := time.Now()
	v, err := jwtverify.New(context.Background(), jwtverify.Config{Issuers: issuers, StartupWait: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("New took %v with 8 hanging issuers and a 300ms StartupWait", d)
	}
}

func waitFetches(t *testing.T, i *usersynctest.Issuer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i.Fetches() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d JWKS fetches, want %d", i.Fetches(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// slowTransport delays every JWKS answer.
type slowTransport struct{ d *atomic.Int64 }

func (s slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(time.Duration(s.d.Load()))
	return http.DefaultTransport.RoundTrip(r)
}

// A key rotation seen by many requests at once: one fetch, and every one
// of them verifies once it has ended.
func TestVerifyConcurrentRotation(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	var delay atomic.Int64
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.CacheSize = -1
		c.HTTPClient = &http.Client{Transport: slowTransport{&delay}, Timeout: 10 * time.Second}
	}, a)
	delay.Store(int64(100 * time.Millisecond))
	a.Rotate()
	before := a.Fetches()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 10 {
		tok := a.Token(map[string]any{"sub": fmt.Sprint("user_", i)})
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				failed.Add(1)
				t.Logf("Verify: %v", err)
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 10 tokens of the new key failed", n)
	}
	if n := a.Fetches() - before; n != 1 {
		t.Fatalf("%d fetches for one rotation, want 1", n)
	}
}

// A JWKS slower than UnknownKeyWait cannot tell whether a new kid is
// good: 503, not 401.
func TestVerifySlowJWKSIsUnavailable(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	var delay atomic.Int64
	v := newVerifier(t, func(c *jwtverify.Config) {
		c.CacheSize = -1
		c.UnknownKeyWait = 100 * time.Millisecond
		c.HTTPClient = &http.Client{Transport: slowTransport{&delay}, Timeout: 10 * time.Second}
	}, a)
	delay.Store(int64(500 * time.Millisecond))
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
