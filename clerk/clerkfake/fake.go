// Package clerkfake is a fake Clerk instance for development and for tests
// that have no *testing.T: a program, a docker-compose service (see the
// command "usersync fake-clerk"), or a test kit of your own. An Instance
// is an http.Handler that serves, on one base URL,
//
//   - the Frontend API's signing keys, GET /.well-known/jwks.json: the
//     base URL is the instance's issuer, the iss of its session tokens;
//   - the users endpoints of the Backend API under /v1, behind the secret
//     key: GET /v1/users (limit, offset, order_by), /v1/users/count,
//     /v1/users/{id} and /v1/jwks, which clerk.UserList uses;
//   - its organizations endpoints, which clerk.OrganizationList uses:
//     GET /v1/organizations (limit, offset, order_by created_at),
//     /v1/organizations/{id or slug} and
//     /v1/organizations/{id}/memberships (limit, offset, order_by
//     created_at, user_id), the lists as {"data": [...], "total_count": N};
//   - GET /v1/sessions/{id}, the session of a token it minted, which
//     clerk.SessionStatus asks for (404 for one it did not mint);
//   - endpoints of its own under /fake: POST /fake/tokens?sub=user_x
//     mints a v2 session token (&org=org_y: active in an organization
//     user_x is a member of; &sid=sess_z: of that session, else of a new
//     one), and POST /fake/send changes a user, an organization or a
//     membership, or ends a session, and sends the signed webhook of the
//     change to Config.WebhookURL.
//
// The same are Go methods: Token, SessionToken, MemberToken, Put,
// PutJSON, Remove, Send, SendJSON and SendCreated for users;
// PutOrganization, RemoveOrganization, PutMembership, RemoveMembership
// (changes without a webhook, as missed ones), SendOrganization and
// SendMembership for organizations; Session, SetSessionStatus and
// RemoveSession (without a webhook) and EndSession for sessions. WebhookSender signs any body as
// Svix does. Package
// clerk/clerktest wraps this package for tests, failing the test instead of
// returning errors.
//
// A fake instance mints a token for anyone who asks: never trust its
// issuer outside development.
package clerkfake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config describes a fake instance. Issuer is required; every other field
// has the default its comment gives.
type Config struct {
	// Issuer is the base URL the instance is reached at: its Frontend API
	// URL, the iss of its tokens, for clerk.Config.Issuer. An http or https
	// URL with a host and no path. (usersync accepts http only on
	// loopback.)
	Issuer string
	// SecretKey is the key that Backend API requests must carry, for
	// clerk.Config.SecretKey. Default "sk_test_" and random characters. A
	// live key (sk_live_...) is refused.
	SecretKey string
	// WebhookSecret signs the webhooks, for clerk.Config.WebhookSecrets.
	// Default a fresh NewWebhookSecret.
	WebhookSecret string
	// WebhookURL is where Send, SendJSON, SendCreated, SendOrganization,
	// SendMembership and EndSession deliver webhooks. Default none: they
	// change the instance and send nothing.
	WebhookURL string
	// HTTPClient delivers the webhooks. Default a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	// Now is the clock of tokens and webhooks, and the updated_at of a user
	// given without one. Default time.Now.
	Now func() time.Time
}

// Instance is a fake Clerk instance, an http.Handler (see the package
// doc). It is safe for concurrent use.
//
// Its users are listed as Clerk lists them: GET /v1/users takes limit 1 to
// 500 (default 10), offset 0 or more, and order_by created_at or
// updated_at, prefixed "+" (ascending) or "-" (descending, and the
// default: -created_at), ties broken by ID; bad parameters answer 422.
// Every Backend API request needs "Authorization: Bearer " + SecretKey
// (else 401). Users are rendered to JSON once, when put, so that large
// lists serve fast.
//
// Its signing key is an RS256 key of its own, made when first needed, or
// the keys SetJWKS gives it.
type Instance struct {
	issuer     string
	secretKey  string
	webhookURL string
	sender     *WebhookSender
	now        func() time.Time

	mu       sync.Mutex
	users    []listedUser     // by (created, id)
	created  map[string]int64 // the created of each user, to find them
	faults   []fault
	jwks     []byte          // the instance's JWKS; nil until first needed
	key      *rsa.PrivateKey // the instance's own key, if jwks is its
	kid      string          // its kid
	onPage   func(offset int)
	requests int
	orgState orgState
	sessions map[string]*session // by ID: those of the tokens minted
}

type fault struct {
	status     int
	retryAfter time.Duration
}

// New returns a fake instance with no users. Its errors never contain a
// secret.
func New(cfg Config) (*Instance, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("clerkfake: the issuer %q is not an http or https URL of a host, without a path", cfg.Issuer)
	}
	switch {
	case strings.HasPrefix(cfg.SecretKey, "sk_live_"):
		return nil, errors.New("clerkfake: the secret key is a live key (sk_live_...): give a fake instance a key of its own")
	case cfg.SecretKey == "":
		cfg.SecretKey = "sk_test_" + rand.Text()
	}
	if cfg.WebhookURL != "" {
		if u, err := url.Parse(cfg.WebhookURL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, errors.New("clerkfake: the webhook URL is not an http or https URL")
		}
	}
	sender, err := NewWebhookSender(cfg.WebhookSecret)
	if err != nil {
		return nil, err
	}
	sender.Client = cfg.HTTPClient
	if sender.Client == nil {
		sender.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now != nil {
		sender.Now = cfg.Now
	}
	return &Instance{
		issuer: cfg.Issuer, secretKey: cfg.SecretKey, webhookURL: cfg.WebhookURL,
		sender: sender, now: sender.Now, created: map[string]int64{},
	}, nil
}

// Issuer returns the instance's issuer, its base URL: for
// clerk.Config.Issuer (and jwtverify.Issuer.URL).
func (i *Instance) Issuer() string { return i.issuer }

// APIURL returns the base URL of its Backend API, Issuer + "/v1": for
// clerk.Config.APIURL.
func (i *Instance) APIURL() string { return i.issuer + "/v1" }

// JWKSURL returns the URL of its signing keys as its Frontend API serves
// them, Issuer + "/.well-known/jwks.json", the default of
// clerk.Config.JWKSURL.
func (i *Instance) JWKSURL() string { return i.issuer + "/.well-known/jwks.json" }

// SecretKey returns the secret key of its Backend API: for
// clerk.Config.SecretKey.
func (i *Instance) SecretKey() string { return i.secretKey }

// WebhookSecret returns the secret its webhooks are signed with: for
// clerk.Config.WebhookSecrets.
func (i *Instance) WebhookSecret() string { return i.sender.Secret }

// SetJWKS makes the instance's signing keys those of jwks (a JWKS, as an
// issuer under test serves it), so that its secret key belongs to that
// issuer. The instance then has no private key: Token and PublicKeyPEM
// fail.
func (i *Instance) SetJWKS(jwks []byte) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.jwks, i.key, i.kid = bytes.Clone(jwks), nil, ""
}

// errNoKey reports an instance whose keys SetJWKS gave.
var errNoKey = errors.New("clerkfake: the instance's keys are those SetJWKS gave: it has no private key")

// PublicKeyPEM returns the instance's own RS256 public key in PEM form, as
// Clerk's dashboard shows it: for clerk.Config.PublicKeyPEM.
func (i *Instance) PublicKeyPEM() (string, error) {
	key, _, err := i.signingKey()
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err // cannot happen: an RSA key marshals
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// signingKey returns the instance's own key and its kid.
func (i *Instance) signingKey() (*rsa.PrivateKey, string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if err := i.ownKeyLocked(); err != nil {
		return nil, "", err
	}
	if i.key == nil {
		return nil, "", errNoKey
	}
	return i.key, i.kid, nil
}

// ownKeyLocked makes the instance's own key, once, unless SetJWKS gave it
// keys. The caller holds i.mu.
func (i *Instance) ownKeyLocked() error {
	if i.jwks != nil {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	kid := "ins_" + rand.Text()
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	if err != nil {
		return err // cannot happen: strings marshal
	}
	i.key, i.kid, i.jwks = key, kid, jwks
	return nil
}

// instanceJWKS returns the instance's JWKS.
func (i *Instance) instanceJWKS() ([]byte, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if err := i.ownKeyLocked(); err != nil {
		return nil, err
	}
	return i.jwks, nil
}

// TokenLifetime is the lifetime of a session token: Clerk's, 60 seconds.
const TokenLifetime = 60 * time.Second

// Token returns a v2 session token of the user sub, signed RS256 with the
// instance's key, with Clerk's claims: iss (Issuer), sub, sid (a fresh
// "sess_..."), iat and nbf (now), exp (now + TokenLifetime) and v (2).
// claims are added on top, such as "azp" (the origin of the app); a claim
// set to nil is left out. sub need not be a listed user.
//
// The instance holds the token's session active, for GET
// /v1/sessions/{id} and EndSession: a new one, or, with a "sid" claim
// (SessionToken), that session, which must be sub's and active.
func (i *Instance) Token(sub string, claims map[string]any) (string, error) {
	if sub == "" {
		return "", errors.New("clerkfake: a token needs a subject (the user's ID)")
	}
	key, kid, err := i.signingKey()
	if err != nil {
		return "", err
	}
	now := i.now()
	all := jwt.MapClaims{
		"iss": i.issuer, "sub": sub, "sid": "sess_" + rand.Text(),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(TokenLifetime).Unix(), "v": 2,
	}
	for name, v := range claims {
		if v == nil {
			delete(all, name)
			continue
		}
		all[name] = v
	}
	if sid, ok := all["sid"].(string); ok {
		if err := i.register(sid, sub, activeOrg(all["o"])); err != nil {
			return "", err
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, all)
	tok.Header["kid"] = kid
	return tok.SignedString(key)
}

// activeOrg is the ID of the active organization of a v2 "o" claim, or
// "".
func activeOrg(o any) string {
	if m, ok := o.(map[string]any); ok {
		id, _ := m["id"].(string)
		return id
	}
	return ""
}

// Put adds users, or replaces those with the same ID (keeping their place
// in the created_at order, as Clerk never changes created_at).
func (i *Instance) Put(users ...User) {
	for _, u := range users {
		i.put(u.listed())
	}
}

// PutJSON adds the users of a users file, or replaces those with the same
// ID: a JSON array of Clerk user objects, the shape of GET /v1/users and
// of the data of a user.created event. Each needs an "id" of letters,
// digits, "_" and "-", unique in the file; a missing "updated_at" is now, a
// missing "created_at" its "updated_at" (both in milliseconds since the
// epoch). Every other field is served as given. A malformed file changes
// nothing.
func (i *Instance) PutJSON(users []byte) error {
	now := i.now().UnixMilli()
	parsed, err := parseUsers(users, now)
	if err != nil {
		return err
	}
	for _, u := range parsed {
		i.put(u)
	}
	return nil
}

func (i *Instance) put(u listedUser) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if k, ok := i.find(u.id); ok {
		u.created = i.users[k].created
		i.users[k] = u
		return
	}
	k, _ := slices.BinarySearchFunc(i.users, u, compareCreated)
	i.users = slices.Insert(i.users, k, u)
	i.created[u.id] = u.created
}

// Remove deletes the users with the given IDs, as deleting them in Clerk
// does. Unknown IDs are ignored.
func (i *Instance) Remove(ids ...string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, id := range ids {
		if k, ok := i.find(id); ok {
			i.users = slices.Delete(i.users, k, k+1)
			delete(i.created, id)
		}
	}
}

// Len returns how many users the instance lists.
func (i *Instance) Len() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.users)
}

// find returns the index of the user with the given ID. The caller holds
// i.mu.
func (i *Instance) find(id string) (int, bool) {
	created, ok := i.created[id]
	if !ok {
		return 0, false
	}
	return slices.BinarySearchFunc(i.users, listedUser{id: id, created: created}, compareCreated)
}

func compareCreated(x, y listedUser) int {
	return cmp.Or(cmp.Compare(x.created, y.created), strings.Compare(x.id, y.id))
}

// Fail makes the next n Backend API requests fail with status; a 429
// carries Retry-After: retryAfter, in whole seconds, as Clerk sends it
// (none if retryAfter is negative).
func (i *Instance) Fail(n, status int, retryAfter time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for range n {
		i.faults = append(i.faults, fault{status, retryAfter})
	}
}

// OnPage sets a function called before each page of GET /v1/users is
// served, with its offset: a test changes the list there, as users who
// sign up or are deleted while a sweep pages do.
func (i *Instance) OnPage(f func(offset int)) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.onPage = f
}

// Requests returns how many requests the Backend API has answered, failed
// ones included (not those of the Frontend API's JWKS or of /fake).
func (i *Instance) Requests() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.requests
}

// ServeHTTP serves the instance: see the package doc.
func (i *Instance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/.well-known/jwks.json" && r.Method == http.MethodGet:
		// The Frontend API's: public, not counted, never failed.
		jwks, err := i.instanceJWKS()
		if err != nil {
			clerkError(w, http.StatusInternalServerError, "internal_clerk_error", "no signing key")
			return
		}
		writeJSON(w, jwks)
	case strings.HasPrefix(r.URL.Path, "/fake/"):
		i.serveFake(w, r)
	default:
		i.serveAPI(w, r)
	}
}

// serveAPI serves the Backend API.
func (i *Instance) serveAPI(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	i.requests++
	var f *fault
	if len(i.faults) > 0 {
		f = &i.faults[0]
		i.faults = i.faults[1:]
	}
	i.mu.Unlock()
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(i.secretKey)) != 1:
		clerkError(w, http.StatusUnauthorized, "authentication_invalid", "The provided secret key is invalid.")
		return
	case f != nil:
		if f.status == http.StatusTooManyRequests {
			if f.retryAfter >= 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(f.retryAfter.Round(time.Second)/time.Second)))
			}
			clerkError(w, f.status, "too_many_requests", "Too many requests, please try again later.")
			return
		}
		clerkError(w, f.status, "internal_clerk_error", "Oops, an unexpected error occurred.")
		return
	case r.Method != http.MethodGet:
		clerkError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Only GET is faked.")
		return
	}
	switch path := strings.TrimPrefix(r.URL.Path, "/v1"); {
	case path == "/users":
		i.list(w, r)
	case path == "/jwks":
		jwks, err := i.instanceJWKS()
		if err != nil {
			clerkError(w, http.StatusInternalServerError, "internal_clerk_error", "no signing key")
			return
		}
		writeJSON(w, jwks)
	case path == "/organizations" || strings.HasPrefix(path, "/organizations/"):
		i.serveOrgs(w, r, path)
	case strings.HasPrefix(path, "/sessions/") && !strings.Contains(path[len("/sessions/"):], "/"):
		i.getSession(w, path[len("/sessions/"):])
	case path == "/users/count":
		writeJSON(w, []byte(`{"object":"total_count","total_count":`+strconv.Itoa(i.Len())+`}`))
	case strings.HasPrefix(path, "/users/") && !strings.Contains(path[len("/users/"):], "/"):
		i.mu.Lock()
		k, ok := i.find(path[len("/users/"):])
		var b []byte
		if ok {
			b = i.users[k].json
		}
		i.mu.Unlock()
		if !ok {
			clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
			return
		}
		writeJSON(w, b)
	default:
		clerkError(w, http.StatusNotFound, "resource_not_found", "not found")
	}
}

func (i *Instance) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset := 10, 0
	var err error
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 500 {
			clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "limit must be 1 to 500")
			return
		}
	}
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "offset must be 0 or more")
			return
		}
	}
	order := cmp.Or(q.Get("order_by"), "-created_at")
	desc := strings.HasPrefix(order, "-")
	field := strings.TrimLeft(order, "+-")
	if field != "created_at" && field != "updated_at" {
		clerkError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "order_by: only created_at and updated_at are faked")
		return
	}
	i.mu.Lock()
	onPage := i.onPage
	i.mu.Unlock()
	if onPage != nil {
		onPage(offset)
	}
	i.mu.Lock()
	users := i.users
	if field == "updated_at" || desc {
		users = slices.Clone(users)
		if field == "updated_at" {
			slices.SortFunc(users, func(x, y listedUser) int {
				return cmp.Or(cmp.Compare(x.updated, y.updated), strings.Compare(x.id, y.id))
			})
		}
		if desc {
			slices.Reverse(users)
		}
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for k := offset; k < min(offset+limit, len(users)); k++ {
		if k > offset {
			b.WriteByte(',')
		}
		b.Write(users[k].json)
	}
	b.WriteByte(']')
	i.mu.Unlock()
	writeJSON(w, b.Bytes())
}

// Send applies a user.created, user.updated or user.deleted event of u to
// the instance's users (Put, or Remove) and delivers it, signed, to
// Config.WebhookURL. It returns the status the webhook answered; without a
// webhook URL, 0 and nothing is sent. A zero u.UpdatedAt is now (later than
// that of the listed user of the same ID), as SendJSON has it. A
// user.deleted event carries only u.ID.
func (i *Instance) Send(ctx context.Context, eventType string, u User) (int, error) {
	switch eventType {
	case "user.created", "user.updated":
		b, err := json.Marshal(u.Clerk())
		if err != nil {
			return 0, err // cannot happen: every field marshals
		}
		if u.UpdatedAt.IsZero() {
			var fields map[string]json.RawMessage
			json.Unmarshal(b, &fields)
			delete(fields, "updated_at")
			if u.CreatedAt.IsZero() {
				delete(fields, "created_at")
			}
			b, _ = json.Marshal(fields)
		}
		return i.SendJSON(ctx, eventType, b)
	case "user.deleted":
		if u.ID == "" || !validID(u.ID) {
			return 0, errors.New(`clerkfake: a user.deleted event needs the user's ID`)
		}
		return i.sendDeleted(ctx, u.ID)
	}
	return 0, fmt.Errorf("clerkfake: event type %.64q is not user.created, user.updated or user.deleted", eventType)
}

// SendJSON is Send with a Clerk user object in JSON, as PutJSON takes one:
// for a user.created or user.updated event, a missing "updated_at" is now
// (later than that of the listed user of the same ID, so that the event is
// newer) and a missing "created_at" is the listed user's, or "updated_at";
// a user.deleted event needs only the "id".
func (i *Instance) SendJSON(ctx context.Context, eventType string, user []byte) (int, error) {
	switch eventType {
	case "user.created", "user.updated":
	case "user.deleted":
		var u struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(user, &u); err != nil || u.ID == "" || !validID(u.ID) {
			return 0, errors.New(`clerkfake: a user.deleted event needs the user's "id"`)
		}
		return i.sendDeleted(ctx, u.ID)
	default:
		return 0, fmt.Errorf("clerkfake: event type %.64q is not user.created, user.updated or user.deleted", eventType)
	}
	now := i.now().UnixMilli()
	u, err := parseUser(user, func(id string) (int64, int64) {
		i.mu.Lock()
		defer i.mu.Unlock()
		if k, ok := i.find(id); ok {
			// Keep created_at, as Clerk never changes it; a newer updated_at.
			return i.users[k].created, max(now, i.users[k].updated+1)
		}
		return 0, now
	})
	if err != nil {
		return 0, fmt.Errorf("clerkfake: the user: %w", err)
	}
	i.put(u)
	return i.deliver(ctx, eventType, rawEvent(eventType, u.json, u.updated))
}

func (i *Instance) sendDeleted(ctx context.Context, id string) (int, error) {
	i.Remove(id)
	return i.deliver(ctx, "user.deleted", event("user.deleted", deletedUser(id), i.now()))
}

// SendCreated delivers a user.created event of every listed user, oldest
// first, to Config.WebhookURL (none without one): the webhooks of users
// who signed up before the app listened. It stops at the first delivery
// that fails (the network, or a status other than 2xx) and returns how many
// were accepted.
func (i *Instance) SendCreated(ctx context.Context) (int, error) {
	i.mu.Lock()
	users := slices.Clone(i.users)
	i.mu.Unlock()
	if i.webhookURL == "" {
		return 0, nil
	}
	for n, u := range users {
		status, err := i.deliver(ctx, "user.created", rawEvent("user.created", u.json, u.updated))
		if err != nil {
			return n, err
		}
		if status < 200 || status > 299 {
			return n, fmt.Errorf("clerkfake: the webhook answered %d to a user.created", status)
		}
	}
	return len(users), nil
}

// deliver posts body, signed, to the webhook URL and returns the status.
func (i *Instance) deliver(ctx context.Context, eventType string, body []byte) (int, error) {
	if i.webhookURL == "" {
		return 0, nil
	}
	resp, err := i.sender.Send(ctx, i.webhookURL, body)
	if err != nil {
		return 0, deliveryError{fmt.Errorf("clerkfake: delivering a %s: %w", eventType, err)}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// deliveryError reports a webhook out of reach.
type deliveryError struct{ error }

func (e deliveryError) Unwrap() error { return e.error }

// serveFake serves the endpoints under /fake.
func (i *Instance) serveFake(w http.ResponseWriter, r *http.Request) {
	var serve func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case "/fake/tokens":
		serve = i.serveToken
	case "/fake/send":
		serve = i.serveSend
	default:
		clerkError(w, http.StatusNotFound, "resource_not_found", "not found: the fake serves POST /fake/tokens and POST /fake/send")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		clerkError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	serve(w, r)
}

// serveToken serves
// POST /fake/tokens?sub=user_x[&azp=origin][&org=org_y][&sid=sess_z]: a
// session token, {"object":"token","jwt":"..."}, as Clerk's Backend API
// answers POST /v1/sessions/{id}/tokens; with org, its active
// organization is org_y (MemberToken); with sid, it is a token of that
// session (SessionToken), else of a new one.
func (i *Instance) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sub := q.Get("sub")
	if sub == "" || !validID(sub) {
		clerkError(w, http.StatusBadRequest, "form_param_value_invalid", "sub must be a user ID: letters, digits, _ and -")
		return
	}
	claims := map[string]any{}
	if azp := q.Get("azp"); azp != "" {
		claims["azp"] = azp
	}
	if sid := q.Get("sid"); sid != "" {
		if !validID(sid) {
			clerkError(w, http.StatusBadRequest, "form_param_value_invalid", "sid must be a session ID: letters, digits, _ and -")
			return
		}
		claims["sid"] = sid
	}
	var tok string
	var err error
	if org := q.Get("org"); org != "" {
		if tok, err = i.MemberToken(sub, org, claims); err != nil {
			clerkError(w, http.StatusBadRequest, "form_param_value_invalid", "org must be an organization the user is a listed member of")
			return
		}
	} else if tok, err = i.Token(sub, claims); err != nil {
		status, code := http.StatusInternalServerError, "internal_clerk_error"
		if claims["sid"] != nil { // another user's session, or one that ended
			status, code = http.StatusBadRequest, "form_param_value_invalid"
		}
		clerkError(w, status, code, err.Error())
		return
	}
	b, _ := json.Marshal(map[string]string{"object": "token", "jwt": tok})
	writeJSON(w, b)
}

// serveSend serves POST /fake/send {"type": "user.updated", "user": {...}}:
// SendJSON; {"type": "organization.created", "organization": {...}}:
// SendOrganization; {"type": "organizationMembership.created",
// "membership": {...}}: SendMembership; {"type": "session.revoked",
// "session": {"id": "sess_..."}}: EndSession. It answers {"sent": true,
// "status": <the webhook's status>}, or {"sent": false} without a webhook
// URL; 502 if the webhook is out of reach.
func (i *Instance) serveSend(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Type         string          `json:"type"`
		User         json.RawMessage `json:"user"`
		Organization json.RawMessage `json:"organization"`
		Membership   json.RawMessage `json:"membership"`
		Session      json.RawMessage `json:"session"`
	}
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in)
	var obj json.RawMessage
	switch {
	case err != nil:
	case strings.HasPrefix(in.Type, "organization."):
		obj = in.Organization
	case strings.HasPrefix(in.Type, "organizationMembership."):
		obj = in.Membership
	case isSessionEnding(in.Type):
		obj = in.Session
	default:
		obj = in.User
	}
	if obj == nil {
		clerkError(w, http.StatusBadRequest, "form_param_value_invalid", `want {"type": "user.created|user.updated|user.deleted", "user": {<a Clerk user object>}}, `+
			`{"type": "organization.created|updated|deleted", "organization": {<a Clerk organization object>}} or `+
			`{"type": "organizationMembership.created|updated|deleted", "membership": {<a Clerk membership object>}} or `+
			`{"type": "session.ended|removed|revoked", "session": {"id": "sess_..."}}`)
		return
	}
	var status int
	switch {
	case strings.HasPrefix(in.Type, "organization"): // organization.*, organizationMembership.*
		status, err = i.sendOrgJSON(r.Context(), in.Type, obj)
	case isSessionEnding(in.Type):
		status, err = i.sendSessionJSON(r.Context(), in.Type, obj)
	default:
		status, err = i.SendJSON(r.Context(), in.Type, obj)
	}
	var out []byte
	switch {
	case errors.As(err, new(deliveryError)):
		clerkError(w, http.StatusBadGateway, "webhook_unreachable", err.Error())
		return
	case err != nil:
		clerkError(w, http.StatusBadRequest, "form_param_value_invalid", err.Error())
		return
	case i.webhookURL == "":
		out = []byte(`{"sent":false}`)
	default:
		out, _ = json.Marshal(map[string]any{"sent": true, "status": status})
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// clerkError answers an error in the shape of Clerk's.
func clerkError(w http.ResponseWriter, status int, code, message string) {
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message, "long_message": message}}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
