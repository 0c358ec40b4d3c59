package usersync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/jwtverify"
	"github.com/usersync/usersync/memstore"
	"github.com/usersync/usersync/usersynctest"
)

// newSyncer returns a Syncer over store (memstore if nil) with the given
// verifier and a quiet logger.
func newSyncer(t testing.TB, store usersync.Store, v *jwtverify.Verifier) *usersync.Syncer {
	return newSyncerWith(t, store, v, nil)
}

// quiet discards the logs of the tests.
var quiet = slog.New(slog.DiscardHandler)

// newVerifier returns a verifier of the issuers, changed by override.
func newVerifier(t testing.TB, override func(*jwtverify.Config), issuers ...*usersynctest.Issuer) *jwtverify.Verifier {
	t.Helper()
	cfg := jwtverify.Config{Logger: quiet}
	for _, i := range issuers {
		cfg.Issuers = append(cfg.Issuers, jwtverify.Issuer{URL: i.URL})
	}
	if override != nil {
		override(&cfg)
	}
	v, err := jwtverify.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// newSyncerWith is newSyncer with a change to the Syncer's Config.
func newSyncerWith(t testing.TB, store usersync.Store, v *jwtverify.Verifier, override func(*usersync.Config)) *usersync.Syncer {
	t.Helper()
	if store == nil {
		store = memstore.New()
	}
	cfg := usersync.Config{Store: store, Logger: quiet}
	if v != nil {
		cfg.Extractor = v
	}
	if override != nil {
		override(&cfg)
	}
	s, err := usersync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRequireIdentity(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, nil, a)
	h := newSyncerWith(t, nil, v, func(c *usersync.Config) { c.Realm = "chat" }).RequireIdentity(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := usersync.IdentityFromContext(r.Context())
		if !ok {
			t.Error("no identity behind RequireIdentity")
		}
		w.Write([]byte(id.Subject))
	}))
	good := a.Token(map[string]any{"sub": "user_ada"})
	expired := a.Token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	tests := []struct {
		name       string
		header     string
		cookie     string
		wantStatus int
		wantBody   string
		wantAuth   string
	}{
		{"no token is 401", "", "", 401, "unauthorized\n", `Bearer realm="chat"`},
		{"valid token", "Bearer " + good, "", 200, "user_ada", ""},
		{"lower-case scheme and extra spaces", "  bearer    " + good + "  ", "", 200, "user_ada", ""},
		{"Basic header is rejected", "Basic dXNlcjpwYXNz", "", 401, "unauthorized\n", `Bearer realm="chat"`},
		{"__session cookie", "", good, 200, "user_ada", ""},
		{"expired", "Bearer " + expired, "", 401, "unauthorized\n", `Bearer realm="chat", error="invalid_token", error_description="token expired"`},
		{"garbage", "Bearer x.y.z", "", 401, "unauthorized\n", `Bearer realm="chat", error="invalid_token", error_description="malformed token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("GET", tt.header, tt.cookie))
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody || w.Header().Get("WWW-Authenticate") != tt.wantAuth {
				t.Fatalf("got %d %q %q, want %d %q %q", w.Code, w.Body.String(), w.Header().Get("WWW-Authenticate"), tt.wantStatus, tt.wantBody, tt.wantAuth)
			}
		})
	}
}

func request(method, header, cookie string) *http.Request {
	r := httptest.NewRequest(method, "/me", nil)
	if header != "" {
		r.Header.Set("Authorization", header)
	}
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: "__session", Value: cookie})
	}
	return r
}

// A state-changing request authenticated by the session cookie must be
// JSON from the app's own origin (or an authorized party); a request with
// an Authorization header needs no such proof.
func TestCookieRequestsAreCheckedForCSRF(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.Issuers[0].AuthorizedParties = []string{"https://app.example.com"} }, a)
	s := newSyncer(t, nil, v)
	tok := a.Token(map[string]any{"sub": "user_ada"})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("done")) })
	tests := []struct {
		name        string
		method      string
		bearer      bool
		contentType string
		origin      string
		fetchSite   string
		want        int
	}{
		{"cookie GET needs nothing", "GET", false, "", "", "", 200},
		{"cookie POST, JSON, same origin", "POST", false, "application/json", "http://example.com", "", 200},
		{"cookie POST, JSON with charset, Sec-Fetch-Site same-origin", "POST", false, "application/json; charset=utf-8", "", "same-origin", 200},
		{"cookie POST, JSON, an authorized party", "POST", false, "application/json", "https://app.example.com", "cross-site", 200},
		{"cookie POST, text/plain from another site", "POST", false, "text/plain", "https://evil.example", "cross-site", 403},
		{"cookie POST, JSON from another site", "POST", false, "application/json", "https://evil.example", "cross-site", 403},
		{"cookie POST, JSON from a sibling subdomain", "DELETE", false, "application/json", "https://evil.example.com", "same-site", 403},
		{"cookie POST, form from the same origin", "POST", false, "application/x-www-form-urlencoded", "http://example.com", "same-origin", 403},
		{"cookie POST, JSON without Origin or Sec-Fetch-Site", "POST", false, "application/json", "", "", 403},
		{"cookie PUT, JSON, Origin null", "PUT", false, "application/json", "null", "", 403},
		{"bearer POST from anywhere", "POST", true, "text/plain", "https://evil.example", "cross-site", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, h := range map[string]http.Handler{"RequireIdentity": s.RequireIdentity(ok), "RequireUser": s.RequireUser(ok), "LoadUser": s.LoadUser(ok)} {
				r := httptest.NewRequest(tt.method, "http://example.com/api/messages", strings.NewReader(`{"body":"hi"}`))
				if tt.bearer {
					r.Header.Set("Authorization", "Bearer "+tok)
				} else {
					r.AddCookie(&http.Cookie{Name: "__session", Value: tok})
				}
				for k, v := range map[string]string{"Content-Type": tt.contentType, "Origin": tt.origin, "Sec-Fetch-Site": tt.fetchSite} {
					if v != "" {
						r.Header.Set(k, v)
					}
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != tt.want {
					t.Fatalf("%s: status %d %q, want %d", name, w.Code, w.Body, tt.want)
				}
			}
		})
	}
}

// Cookie "-" reads no cookie: only the Authorization header counts.
func TestRequireIdentityWithoutCookies(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.Cookie = "-" }, a)
	w := httptest.NewRecorder()
	newSyncer(t, nil, v).RequireIdentity(http.NotFoundHandler()).ServeHTTP(w, request("GET", "", a.Token(nil)))
	if w.Code != 401 {
		t.Fatalf("a cookie was read: %d", w.Code)
	}
}

// The user middlewares: RequireUser resolves (and first stores) the user,
// LoadUser lets signed-out requests through; both refuse bad tokens and
// answer through the error handler.
func TestUserMiddlewares(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, nil, a)
	store := memstore.New()
	s := newSyncer(t, store, v)
	show := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, hasID := usersync.IdentityFromContext(r.Context())
		u, ok := usersync.UserFromContext(r.Context())
		switch {
		case ok:
			w.Write([]byte("user " + u.Name))
		case hasID:
			w.Write([]byte("identity without user"))
		default:
			w.Write([]byte("anonymous"))
		}
	})
	ada := a.Token(map[string]any{"sub": "user_ada", "name": "Ada"})
	gone := a.Token(map[string]any{"sub": "user_gone", "name": "Gone"})
	if _, _, err := s.Delete(context.Background(), a.URL, "user_gone"); err != nil {
		t.Fatal(err)
	}
	expired := a.Token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	tests := []struct {
		name       string
		soft       bool
		token      string
		cookie     string
		wantStatus int
		wantBody   string
	}{
		{"require: no token", false, "", "", 401, "unauthorized\n"},
		{"require: expired", false, expired, "", 401, "unauthorized\n"},
		{"require: expired cookie", false, "", expired, 401, "unauthorized\n"},
		{"require: first request stores the user", false, ada, "", 200, "user Ada"},
		{"require: again", false, ada, "", 200, "user Ada"},
		{"require: cookie", false, "", ada, 200, "user Ada"},
		{"require: deleted user", false, gone, "", 403, "forbidden\n"},
		{"load: no token passes anonymous", true, "", "", 200, "anonymous"},
		{"load: an expired header is still refused", true, expired, "", 401, "unauthorized\n"},
		{"load: an expired cookie is signed out", true, "", expired, 200, "anonymous"},
		{"load: valid token", true, ada, "", 200, "user Ada"},
		{"load: valid cookie", true, "", ada, 200, "user Ada"},
		{"load: deleted user passes without a user", true, gone, "", 200, "identity without user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := s.RequireUser(show)
			if tt.soft {
				h = s.LoadUser(show)
			}
			header := ""
			if tt.token != "" {
				header = "Bearer " + tt.token
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("GET", header, tt.cookie))
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", w.Code, w.Body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if n, _ := store.Count(context.Background()); n != 1 {
		t.Fatalf("%d users stored, want 1 (Ada, once)", n)
	}
}

// With MetadataClaim, a customised session token's metadata reaches the
// stored profile, as a webhook's public_metadata does.
func TestRequireUserStoresTokenMetadata(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, func(c *jwtverify.Config) { c.Issuers[0].MetadataClaim = "metadata" }, a)
	store := memstore.New()
	s := newSyncer(t, store, v)
	h := s.RequireUser(http.NotFoundHandler())
	tok := a.Token(map[string]any{"sub": "user_ada", "metadata": map[string]any{"plan": "pro"}})
	h.ServeHTTP(httptest.NewRecorder(), request("GET", "Bearer "+tok, ""))
	u, err := store.GetByTokenIdentifier(context.Background(), usersync.TokenIdentifier(a.URL, "user_ada"))
	if err != nil || string(u.Metadata) != `{"plan":"pro"}` {
		t.Fatalf("stored %s, %v", u.Metadata, err)
	}
}

// An API answers JSON through ErrorHandler; the 401 keeps its challenge and
// the 503 of unavailable keys its Retry-After; a store failure is a 500.
func TestErrorHandler(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	down := usersynctest.NewIssuer(t)
	down.SetJWKSMode(usersynctest.JWKS500)
	jsonErrors := func(w http.ResponseWriter, r *http.Request, status int, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": http.StatusText(status)})
	}
	v := newVerifier(t, func(c *jwtverify.Config) { c.UnknownKeyWait = 50 * time.Millisecond }, a, down)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tests := []struct {
		name       string
		store      usersync.Store
		token      string
		wantStatus int
		wantHeader [2]string
	}{
		{"no token", nil, "", 401, [2]string{"WWW-Authenticate", `Bearer realm="usersync"`}},
		{"keys unavailable", nil, down.Token(nil), 503, [2]string{"Retry-After", "5"}},
		{"store failure", failingStore{memstore.New()}, a.Token(nil), 500, [2]string{"Content-Type", "application/json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSyncerWith(t, tt.store, v, func(c *usersync.Config) { c.ErrorHandler = jsonErrors })
			header := ""
			if tt.token != "" {
				header = "Bearer " + tt.token
			}
			w := httptest.NewRecorder()
			s.RequireUser(ok).ServeHTTP(w, request("GET", header, ""))
			var body map[string]string
			if w.Code != tt.wantStatus || json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] == "" {
				t.Fatalf("got %d %q, want %d and a JSON error", w.Code, w.Body, tt.wantStatus)
			}
			if got := w.Header().Get(tt.wantHeader[0]); got != tt.wantHeader[1] {
				t.Fatalf("%s = %q, want %q", tt.wantHeader[0], got, tt.wantHeader[1])
			}
		})
	}
}

// Without an extractor, building a user middleware panics at start, like
// mux.Handle with a nil handler, instead of failing every request.
func TestUserMiddlewareWithoutExtractor(t *testing.T) {
	s := newSyncer(t, nil, nil)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Config.Extractor") {
			t.Fatalf("recovered %v, want a panic naming Config.Extractor", r)
		}
	}()
	s.RequireUser(http.NotFoundHandler())
}

// failingStore fails every write and lookup, as a database that is down
// does.
type failingStore struct{ usersync.Store }

var errDown = errors.New("connection refused")

func (failingStore) Upsert(context.Context, usersync.Write) (usersync.User, usersync.Outcome, error) {
	return usersync.User{}, usersync.Stale, errDown
}

func (failingStore) GetByTokenIdentifier(context.Context, string) (usersync.User, error) {
	return usersync.User{}, errDown
}

// statusError is an extractor's error with a status and a description of
// its own.
type statusError struct {
	status int
	desc   string
}

func (e statusError) Error() string       { return "refused" }
func (e statusError) HTTPStatus() int     { return e.status }
func (e statusError) Description() string { return e.desc }
func (e statusError) Unwrap() error       { return usersync.ErrInvalidToken }

type refusing struct{ err error }

func (r refusing) Identify(*http.Request) (*usersync.Identity, error) { return nil, r.err }

// An extractor's error chooses its status only within 400 to 599, and its
// description never breaks out of the challenge's quotes.
func TestExtractorErrorsAreBounded(t *testing.T) {
	tests := []struct {
		err        error
		wantStatus int
		wantAuth   string
	}{
		{statusError{403, "x"}, 403, ""},
		{statusError{0, "x"}, 401, `Bearer realm="usersync", error="invalid_token", error_description="x"`},
		{statusError{200, `token "abc" \ revoked`}, 401, `Bearer realm="usersync", error="invalid_token", error_description="token abc  revoked"`},
	}
	for _, tt := range tests {
		s := newSyncerWith(t, nil, nil, func(c *usersync.Config) { c.Extractor = refusing{tt.err} })
		w := httptest.NewRecorder()
		s.RequireUser(http.NotFoundHandler()).ServeHTTP(w, request("GET", "", ""))
		if w.Code != tt.wantStatus || w.Header().Get("WWW-Authenticate") != tt.wantAuth {
			t.Errorf("%+v: %d %q, want %d %q", tt.err, w.Code, w.Header().Get("WWW-Authenticate"), tt.wantStatus, tt.wantAuth)
		}
	}
}
