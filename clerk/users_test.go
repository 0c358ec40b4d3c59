package clerk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
)

// newUserList returns the user list of api, recording its waits instead of
// sleeping them.
func newUserList(t *testing.T, api *clerktest.API) (*clerk.UserList, *[]time.Duration) {
	t.Helper()
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer, SecretKey: api.SecretKey, APIURL: api.URL, PublicKeyPEM: api.PublicKeyPEM()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.UserList()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	waits := new([]time.Duration)
	clerk.SetSleep(l, func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		*waits = append(*waits, d)
		return ctx.Err()
	})
	return l, waits
}

func apiUsers(n int, t0 time.Time) []clerktest.User {
	us := make([]clerktest.User, n)
	for i := range us {
		us[i] = clerktest.User{
			ID: fmt.Sprintf("user_%03d", i), FirstName: clerktest.Str(fmt.Sprintf("Given%d", i)), LastName: clerktest.Str("Family"),
			Email: fmt.Sprintf("u%d@example.com", i), CreatedAt: t0.Add(time.Duration(i) * time.Second),
			UpdatedAt: t0.Add(time.Duration(i)*time.Second + time.Hour),
		}
	}
	return us
}

func TestUserListPagesOldestFirst(t *testing.T) {
	api := clerktest.NewAPI(t)
	t0 := time.UnixMilli(1_700_000_000_000)
	us := apiUsers(25, t0)
	// Put them newest first: the list orders by created_at, not by Put.
	for i := len(us) - 1; i >= 0; i-- {
		api.Put(us[i])
	}
	l, _ := newUserList(t, api)
	ctx := context.Background()
	if n, err := l.Count(ctx); err != nil || n != 25 {
		t.Fatalf("Count = %d, %v; want 25", n, err)
	}
	if l.Issuer() != clerkIssuer {
		t.Fatalf("Issuer = %q", l.Issuer())
	}
	var got []string
	for offset := 0; ; offset += 10 {
		page, err := l.Page(ctx, offset, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range page {
			got = append(got, w.Subject)
		}
		if len(page) < 10 {
			break
		}
	}
	if len(got) != 25 || got[0] != "user_000" || got[24] != "user_024" {
		t.Fatalf("paged %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("not oldest first: %v", got)
		}
	}
}

func TestUserListMapsLikeWebhooks(t *testing.T) {
	api := clerktest.NewAPI(t)
	at := time.UnixMilli(1_700_000_123_456)
	u := clerktest.User{
		ID: "user_2x", FirstName: clerktest.Str("Ada"), LastName: clerktest.Str("Lovelace"), Email: "ada@example.com",
		Phone: "+15551234567", ImageURL: "https://img.clerk.com/ada", ExternalID: "legacy-42",
		PublicMetadata: json.RawMessage(`{"plan":"pro"}`), LastSignInAt: at.Add(-time.Minute), UpdatedAt: at,
	}
	api.Put(u)
	l, _ := newUserList(t, api)
	page, err := l.Page(context.Background(), 0, 500)
	if err != nil || len(page) != 1 {
		t.Fatalf("Page = %v, %v", page, err)
	}
	w := page[0]
	// The webhook of the same user gives the same write.
	p, _ := clerk.New(clerk.Config{Issuer: clerkIssuer})
	ev, err := p.Decode(context.Background(), clerktest.UserEvent("user.updated", u))
	if err != nil {
		t.Fatal(err)
	}
	want := *ev.Write
	if w.Issuer != want.Issuer || w.Subject != want.Subject || w.Version != want.Version || w.Fields != want.Fields ||
		string(w.Profile.Metadata) != string(want.Profile.Metadata) {
		t.Fatalf("API write %+v, webhook write %+v", w, want)
	}
	if !reflect.DeepEqual(w.Profile, want.Profile) {
		t.Fatalf("profile %+v, webhook profile %+v", w.Profile, want.Profile)
	}
	if w.Version != usersync.Version(at.UnixMilli()) || w.Profile.ExternalID != "legacy-42" || w.Profile.GivenName != "Ada" ||
		w.Profile.FamilyName != "Lovelace" || !w.Profile.LastSignInAt.Equal(at.Add(-time.Minute)) || w.Profile.Email != "ada@example.com" {
		t.Fatalf("write %+v", w)
	}

	found, err := l.Lookup(context.Background(), "user_2x")
	if err != nil || found == nil || found.Subject != "user_2x" || found.Version != w.Version {
		t.Fatalf("Lookup = %+v, %v", found, err)
	}
	for _, id := range []string{"user_gone", "../users", "a/b", "%2e%2e"} {
		if found, err := l.Lookup(context.Background(), id); err != nil || found != nil {
			t.Fatalf("Lookup(%q) = %+v, %v; want nil, nil", id, found, err)
		}
	}
}

func TestUserListRetries(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		status   int
		n        int
		retry    time.Duration
		wantErr  bool
		requests int
	}{
		{"429 waits Retry-After", 429, 2, 3 * time.Second, false, 3},
		{"429 without Retry-After waits a second", 429, 1, -1, false, 2},
		{"429 with Retry-After 0 retries at once", 429, 1, 0, false, 2},
		{"5xx backs off", 503, 3, 0, false, 4},
		{"502 then fine", 502, 1, 0, false, 2},
		{"5xx six times gives up", 500, 6, 0, true, 6},
		{"429 longer than a minute gives up", 429, 1, 2 * time.Minute, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := clerktest.NewAPI(t)
			api.Put(apiUsers(3, time.UnixMilli(1_700_000_000_000))...)
			l, waits := newUserList(t, api)
			if _, err := l.Count(ctx); err != nil { // checks the instance first, once
				t.Fatal(err)
			}
			before := api.Requests()
			api.Fail(tc.n, tc.status, tc.retry)
			n, err := l.Count(ctx)
			if tc.wantErr {
				if !errors.Is(err, clerk.ErrAPI) {
					t.Fatalf("err = %v, want ErrAPI", err)
				}
			} else if err != nil || n != 3 {
				t.Fatalf("Count = %d, %v", n, err)
			}
			if got := api.Requests() - before; got != tc.requests {
				t.Fatalf("%d requests, want %d", got, tc.requests)
			}
			if len(*waits) != tc.requests-1 {
				t.Fatalf("waits %v for %d requests", *waits, tc.requests)
			}
			for i, d := range *waits {
				switch {
				case tc.status == 429 && tc.retry > 0 && d != tc.retry:
					t.Fatalf("wait %d = %v, want Retry-After %v", i, d, tc.retry)
				case tc.status == 429 && tc.retry < 0 && d != time.Second:
					t.Fatalf("wait %d = %v, want 1s", i, d)
				case tc.status == 429 && tc.retry == 0 && d > time.Millisecond:
					t.Fatalf("wait %d = %v, want at once", i, d)
				case tc.status != 429 && (d < 100*time.Millisecond || d > 10*time.Second):
					t.Fatalf("backoff %d = %v", i, d)
				}
			}
		})
	}
}

func TestUserListFailsForGood(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	p, _ := clerk.New(clerk.Config{Issuer: clerkIssuer, SecretKey: "sk_test_wrong_key_value", APIURL: api.URL, PublicKeyPEM: api.PublicKeyPEM()})
	l, _ := p.UserList()
	_, err := l.Count(ctx)
	if !errors.Is(err, clerk.ErrAPI) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad key: %v", err)
	}
	if strings.Contains(err.Error(), "sk_test_wrong") {
		t.Fatalf("the error shows the secret key: %v", err)
	}
	if api.Requests() != 1 {
		t.Fatalf("a 401 was retried: %d requests", api.Requests())
	}

	good, _ := newUserList(t, api)
	if _, err := good.Page(ctx, 0, 501); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("limit 501: %v", err)
	}
	if _, err := good.Page(ctx, -1, 10); !errors.Is(err, usersync.ErrInvalid) {
		t.Fatalf("offset -1: %v", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := good.Count(cancelled); !errors.Is(err, context.Canceled) || !errors.Is(err, clerk.ErrAPI) {
		t.Fatalf("cancelled: %v", err)
	}

	for _, cfg := range []clerk.Config{
		{Issuer: clerkIssuer},
		{Issuer: clerkIssuer, SecretKey: "sk_test_x", APIURL: "ftp://example.com"},
		{Issuer: clerkIssuer, SecretKey: "sk_test_x", APIURL: "::"},
		{Issuer: clerkIssuer, SecretKey: "sk_test_x", APIURL: "http://api.clerk.com/v1"}, // the key in cleartext
		{Issuer: clerkIssuer, SecretKey: "sk_test_x", JWKSURL: "http://clerk.example.com/jwks"},
		{Issuer: "http://clerk.example.com", SecretKey: "sk_test_x"}, // its keys in cleartext
		{Issuer: clerkIssuer, SecretKey: "sk_test_x", PublicKeyPEM: "not a key"},
	} {
		p, _ := clerk.New(cfg)
		if _, err := p.UserList(); !errors.Is(err, usersync.ErrInvalid) {
			t.Fatalf("UserList of %+v: %v", cfg, err)
		}
	}
}

// TestUserListTrustsOnlyClerk: the key is never sent where a redirect
// points, never shown if a server echoes it, and only Clerk's own 404
// says a user is gone.
func TestUserListTrustsOnlyClerk(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	jwks := get(t, api.JWKSURL)
	var hits []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		switch r.URL.Path {
		case "/v1/jwks":
			w.Write(jwks)
		case "/v1/users/count":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/v1/users/user_proxy404":
			http.Error(w, "<html>not found</html>", http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"errors":[{"code":"authentication_invalid","message":"bad key %s"}]}`, r.Header.Get("Authorization"))
		}
	}))
	defer srv.Close()
	p, _ := clerk.New(clerk.Config{Issuer: clerkIssuer, SecretKey: "sk_test_echoed_secret", APIURL: srv.URL + "/v1", JWKSURL: api.JWKSURL})
	l, err := p.UserList()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Count(ctx); !errors.Is(err, clerk.ErrAPI) || !strings.Contains(err.Error(), "302") {
		t.Fatalf("a redirect: %v", err)
	}
	for _, h := range hits {
		if strings.HasPrefix(h, "/elsewhere") {
			t.Fatalf("the redirect was followed: %v", hits)
		}
	}
	if w, err := l.Lookup(ctx, "user_proxy404"); err == nil || w != nil {
		t.Fatalf("a 404 that is not Clerk's: %v, %v; want an error", w, err)
	}
	_, err = l.Page(ctx, 0, 10)
	if !errors.Is(err, clerk.ErrAPI) || strings.Contains(err.Error(), "echoed_secret") || !strings.Contains(err.Error(), "[secret key]") {
		t.Fatalf("an echoed key: %v", err)
	}
}

func TestUserListCancelStopsTheWait(t *testing.T) {
	api := clerktest.NewAPI(t)
	p, _ := clerk.New(clerk.Config{Issuer: clerkIssuer, SecretKey: api.SecretKey, APIURL: api.URL, PublicKeyPEM: api.PublicKeyPEM()})
	l, _ := p.UserList()
	api.Fail(1, 429, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := l.Count(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

// FuzzUserListPage decodes arbitrary answers to GET /users: a page is
// either an error wrapping ErrAPI or writes that name a user of the issuer,
// and nothing panics.
func FuzzUserListPage(f *testing.F) {
	api := clerktest.NewAPI(f)
	api.Put(apiUsers(3, time.UnixMilli(1_700_000_000_000))...)
	resp, err := http.DefaultClient.Do(mustRequest(f, api))
	if err != nil {
		f.Fatal(err)
	}
	real, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, b := range []string{string(real), `[]`, `[{}]`, `[{"id":"u","updated_at":-1}]`, `{"data":[]}`, `[null]`, `[{"id":"u","last_sign_in_at":1e300}]`, `nul`} {
		f.Add([]byte(b))
	}
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := p.DecodePage(body)
		if err != nil {
			if !errors.Is(err, clerk.ErrAPI) {
				t.Fatalf("error without ErrAPI: %v", err)
			}
			return
		}
		for _, w := range page {
			if w.Issuer != clerkIssuer || w.Subject == "" {
				t.Fatalf("write of issuer %q, subject %q", w.Issuer, w.Subject)
			}
		}
	})
}

func mustRequest(t testing.TB, api *clerktest.API) *http.Request {
	r, err := http.NewRequest("GET", api.URL+"/users?limit=10&offset=0&order_by=%2Bcreated_at", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+api.SecretKey)
	return r
}

// get returns the body of a GET of url.
func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// TestUserListChecksTheInstance: a secret key of another instance than
// the issuer's is refused before any user is listed, whether the issuer's
// keys come from its PEM key or its JWKS; the right one is checked once.
func TestUserListChecksTheInstance(t *testing.T) {
	ctx := context.Background()
	mine, other := clerktest.NewAPI(t), clerktest.NewAPI(t)
	mine.Put(apiUsers(3, time.UnixMilli(1_700_000_000_000))...)
	for _, tc := range []struct {
		name      string
		cfg       clerk.Config
		wrong     bool
		wantInErr []string
	}{
		{"its PEM key", clerk.Config{PublicKeyPEM: mine.PublicKeyPEM()}, false, nil},
		{"its JWKS", clerk.Config{JWKSURL: mine.JWKSURL}, false, nil},
		{"another instance's PEM key", clerk.Config{PublicKeyPEM: other.PublicKeyPEM()}, true, []string{clerkIssuer, "PublicKeyPEM", `kid "ins_`}},
		{"another instance's JWKS", clerk.Config{JWKSURL: other.JWKSURL}, true, []string{clerkIssuer, `kid "ins_`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Issuer, cfg.SecretKey, cfg.APIURL = clerkIssuer, mine.SecretKey, mine.URL
			p, err := clerk.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			l, err := p.UserList()
			if err != nil {
				t.Fatal(err)
			}
			before := mine.Requests()
			for range 2 {
				n, err := l.Count(ctx)
				if tc.wrong {
					if !errors.Is(err, clerk.ErrWrongInstance) {
						t.Fatalf("Count = %d, %v; want ErrWrongInstance", n, err)
					}
					for _, want := range tc.wantInErr {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("the error does not name %q: %v", want, err)
						}
					}
					if strings.Contains(err.Error(), mine.SecretKey) {
						t.Fatal("the error shows the secret key")
					}
					if _, err := l.Page(ctx, 0, 10); !errors.Is(err, clerk.ErrWrongInstance) {
						t.Fatalf("Page: %v", err)
					}
					if w, err := l.Lookup(ctx, "user_00000"); w != nil || !errors.Is(err, clerk.ErrWrongInstance) {
						t.Fatalf("Lookup: %v, %v", w, err)
					}
				} else if err != nil || n != 3 {
					t.Fatalf("Count = %d, %v", n, err)
				}
			}
			// The right key: /jwks once, then two counts. A wrong one: /jwks
			// on every call, and never a user listed.
			want := 3
			if tc.wrong {
				want = 6
			}
			if got := mine.Requests() - before; got != want {
				t.Fatalf("%d requests, want %d", got, want)
			}
		})
	}
}

// TestUserListPausesAfterA429: a 429 holds every request of the list, not
// only the one that got it, until its Retry-After has passed; an answer
// lifts the pause.
func TestUserListPausesAfterA429(t *testing.T) {
	ctx := context.Background()
	api := clerktest.NewAPI(t)
	api.Put(apiUsers(1, time.UnixMilli(1_700_000_000_000))...)
	l, _ := newUserList(t, api)
	if _, err := l.Count(ctx); err != nil { // checks the instance first, once
		t.Fatal(err)
	}
	sleeps, release := make(chan time.Duration, 3), make(chan struct{})
	clerk.SetSleep(l, func(ctx context.Context, d time.Duration) error {
		sleeps <- d
		<-release
		return nil
	})
	api.Fail(1, http.StatusTooManyRequests, 30*time.Second)
	errs := make(chan error, 2)
	go func() { _, err := l.Count(ctx); errs <- err }()
	if d := <-sleeps; d != 30*time.Second {
		t.Fatalf("the 429's wait: %v", d)
	}
	before := api.Requests()
	go func() { _, err := l.Lookup(ctx, "user_000"); errs <- err }()
	if d := <-sleeps; d <= 0 || d > 30*time.Second {
		t.Fatalf("a request during the pause waited %v, want the rest of Retry-After", d)
	}
	if n := api.Requests() - before; n != 0 {
		t.Fatalf("%d requests during the pause", n)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Answered: the pause is over, and the next request waits for nothing.
	if _, err := l.Count(ctx); err != nil || len(sleeps) != 0 {
		t.Fatalf("after the pause: %v, %d waits", err, len(sleeps))
	}
}
