package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/usersync/usersync/clerk/clerkfake"
	"github.com/usersync/usersync/internal/pubkey"
)

const fakeClerkUsage = `usage: usersync fake-clerk [flags]

Serves a fake Clerk instance (package clerk/clerkfake) until interrupted:
its signing keys at /.well-known/jwks.json (the URL is the issuer), the
users, organizations and sessions endpoints of its Backend API under /v1
(GET /v1/sessions/{id}: the session of a token it minted), and

  POST /fake/tokens?sub=user_x[&azp=origin][&org=org_y][&sid=sess_z]
      a session token of user_x (active in org_y, of which user_x is a
      member; of session sess_z, one of user_x's it minted, else a new one)
  POST /fake/send {"type": "user.updated", "user": {<Clerk user>}}
      changes the user and sends the signed webhook to -webhook-url
  POST /fake/send {"type": "organization.created", "organization": {<Clerk organization>}}
  POST /fake/send {"type": "organizationMembership.created", "membership": {<Clerk membership>}}
      the same for organizations and memberships
  POST /fake/send {"type": "session.revoked", "session": {"id": "sess_z"}}
      ends the session (session.ended, session.removed or session.revoked)
      and sends the signed webhook: its tokens are refused from then on

It prints, on stdout, the CLERK_ISSUER, CLERK_API_URL, CLERK_SECRET_KEY and
CLERK_WEBHOOK_SECRET to give the app. It mints tokens for anyone who can
reach it: never trust its issuer outside development. usersync accepts an
http issuer on loopback only: under docker-compose, run it in the app's
network namespace (network_mode: "service:app").

`

// fakeClerk serves a fake Clerk instance until ctx ends.
func fakeClerk(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fake-clerk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "the address to listen on; 0.0.0.0:PORT for every interface (port 0: any free port)")
	publicURL := fs.String("url", "", "the URL the app reaches the fake at, the issuer of its tokens (default http:// and the address it listens on, 127.0.0.1 for 0.0.0.0)")
	usersFile := fs.String("users", "", "a JSON file of the instance's users: an array of Clerk user objects, as GET /v1/users lists them")
	webhookURL := fs.String("webhook-url", "", "the app's webhook endpoint, such as http://127.0.0.1:8080/clerk-users-webhook")
	sendUsers := fs.Bool("send-users", false, "at start, send a user.created webhook of each user of -users to -webhook-url, retrying while it is out of reach")
	secretKey := fs.String("secret-key", "", "the Backend API's secret key, sk_test_... (default random)")
	webhookSecret := fs.String("webhook-secret", "", "the webhooks' signing secret, whsec_<base64> (default random)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), fakeClerkUsage)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if *sendUsers && *webhookURL == "" {
		fmt.Fprintln(stderr, "usersync fake-clerk: -send-users needs -webhook-url")
		return errUsage
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	issuer := cmp.Or(*publicURL, "http://"+reachable(ln.Addr()))
	inst, err := clerkfake.New(clerkfake.Config{Issuer: issuer, SecretKey: *secretKey, WebhookSecret: *webhookSecret, WebhookURL: *webhookURL})
	if err != nil {
		return fmt.Errorf("-url, -secret-key, -webhook-secret or -webhook-url: %w", err)
	}
	if *usersFile != "" {
		data, err := os.ReadFile(*usersFile)
		if err == nil {
			err = inst.PutJSON(data)
		}
		if err != nil {
			return fmt.Errorf("-users: %w", err)
		}
	}

	srv := &http.Server{Handler: inst, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	fmt.Fprintf(stdout, "CLERK_ISSUER=%s\nCLERK_API_URL=%s\n", inst.Issuer(), inst.APIURL())
	if *secretKey == "" {
		fmt.Fprintf(stdout, "CLERK_SECRET_KEY=%s\n", inst.SecretKey())
	} else {
		fmt.Fprintln(stdout, "# CLERK_SECRET_KEY: as -secret-key")
	}
	if *webhookSecret == "" {
		fmt.Fprintf(stdout, "CLERK_WEBHOOK_SECRET=%s\n", inst.WebhookSecret())
	} else {
		fmt.Fprintln(stdout, "# CLERK_WEBHOOK_SECRET: as -webhook-secret")
	}
	fmt.Fprintf(stderr, "usersync fake-clerk: a fake Clerk instance with %d users on %s, listening on %s; it mints tokens for anyone: not for production\n",
		inst.Len(), inst.Issuer(), ln.Addr())
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !pubkey.Loopback(host) {
		fmt.Fprintln(stderr, "usersync fake-clerk: warning: listening beyond loopback: whoever reaches it can mint tokens of its issuer")
	}
	if pubkey.CheckURL(inst.Issuer()) != nil {
		fmt.Fprintln(stderr, "usersync fake-clerk: warning: usersync trusts an http issuer only on loopback (-url)")
	}
	fmt.Fprintf(stderr, "  a session token: curl -X POST '%s/fake/tokens?sub=user_123'\n", inst.Issuer())
	fmt.Fprintf(stderr, "  a webhook:       curl -X POST %s/fake/send -d '{\"type\":\"user.updated\",\"user\":{\"id\":\"user_123\",\"first_name\":\"Ada\"}}'\n", inst.Issuer())

	sent := make(chan struct{})
	if *sendUsers {
		go func() {
			defer close(sent)
			sendCreated(ctx, inst, stderr)
		}()
	} else {
		close(sent)
	}

	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	<-sent
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "usersync fake-clerk: stopped")
	return nil
}

// reachable returns addr with an unspecified IP (0.0.0.0, ::) as
// 127.0.0.1, for a URL.
func reachable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// sendCreated sends a user.created of every user to the webhook, again
// while the app is out of reach (starting after the fake, as it fetches
// the fake's keys), for at most two minutes.
func sendCreated(ctx context.Context, inst *clerkfake.Instance, stderr io.Writer) {
	wait, deadline := 250*time.Millisecond, time.Now().Add(2*time.Minute)
	for told := false; ; told = true {
		n, err := inst.SendCreated(ctx)
		if err == nil {
			fmt.Fprintf(stderr, "usersync fake-clerk: sent a user.created of each of the %d users to -webhook-url\n", n)
			return
		}
		var netErr *net.OpError
		if ctx.Err() != nil || !errors.As(err, &netErr) || time.Now().After(deadline) {
			if ctx.Err() == nil {
				fmt.Fprintf(stderr, "usersync fake-clerk: -send-users: %d sent, then: %v\n", n, err)
			}
			return
		}
		if !told {
			fmt.Fprintln(stderr, "usersync fake-clerk: -webhook-url is out of reach; trying again for two minutes")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}
