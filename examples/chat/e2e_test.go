package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/usersync/usersync/clerk/clerktest"
)

// chromium returns the path of a Chromium browser, or skips t.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium installed: skipping the browser test (apt-get install -y chromium)")
	return ""
}

// TestBrowser drives the page in headless Chromium: dev sign-in, the
// waiting state, two messages, the list and count; signed organization
// webhooks make a room, where a message is sent and listed, and that is
// gone after the membership's deletion and a reload; then a signed
// user.deleted ends her sessions and turns the author into "deleted user".
func TestBrowser(t *testing.T) {
	browser := chromium(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	sender := clerktest.NewWebhookSender(t)
	a, cleanup, err := newApp(context.Background(), config{databaseURL: filepath.Join(t.TempDir(), "chat.db"), secrets: sender.Secret}, base, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	// Hold POST /api/users/store until the test has seen the waiting state.
	release := make(chan struct{})
	routes := a.routes()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/users/store" {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		routes.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	do("open the page and sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("devform")),
		chromedp.SetValue(chromedp.ID("devname"), "Ada Lovelace"),
		chromedp.SetValue(chromedp.ID("devuser"), "user_ada"),
		chromedp.Click(chromedp.ID("devsignin")),
		chromedp.WaitVisible(chromedp.ID("waiting")),
	)
	close(release)
	do("chat appears", chromedp.WaitVisible(chromedp.ID("chat")), chromedp.WaitVisible(chromedp.ID("empty")))
	sendDisabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("sendbtn").disabled`))
	if err != nil || !sendDisabled {
		t.Fatalf("the send button is enabled with an empty message (%v)", err)
	}
	for _, msg := range []string{"Hello from the browser", "Second message"} {
		do("send "+msg,
			chromedp.SendKeys(chromedp.ID("body"), msg),
			chromedp.Click(chromedp.ID("sendbtn")),
			chromedp.WaitVisible(chromedp.Search(`//li[contains(., "`+msg+`")]`)),
		)
	}
	do("count updates", chromedp.WaitVisible(chromedp.Search(`//span[@id="count" and text()="2"]`)))
	if list, me := text("#messages"), text("#me"); strings.Count(list, "Ada Lovelace") != 2 || me != "Ada Lovelace" {
		t.Fatalf("list %q, me %q", list, me)
	}

	// Clerk's webhooks make an organization with Ada in it: the page shows
	// its room, apart from everyone's.
	acme := testOrg{"org_2acme", "Acme", "acme"}
	adaAcme := newMembership("orgmem_ada_acme", acme, "user_ada", "org:admin")
	for _, body := range [][]byte{orgEvent("organization.created", acme), adaAcme.event("organizationMembership.created")} {
		if resp := sender.Send(base+"/clerk-users-webhook", body); resp.StatusCode != 200 {
			t.Fatalf("organization webhook: %d", resp.StatusCode)
		}
	}
	do("the room appears", chromedp.WaitVisible(chromedp.ID("room-"+acme.id)))
	do("open the room and send in it",
		chromedp.Click(chromedp.ID("room-"+acme.id)),
		chromedp.WaitVisible(chromedp.Search(`//h2[@id="roomname" and text()="Acme"]`)),
		chromedp.WaitVisible(chromedp.ID("empty")),
		chromedp.SendKeys(chromedp.ID("body"), "Hello Acme"),
		chromedp.Click(chromedp.ID("sendbtn")),
		chromedp.WaitVisible(chromedp.Search(`//li[contains(., "Hello Acme") and contains(., "Ada Lovelace")]`)),
	)
	if list := text("#messages"); strings.Contains(list, "Hello from the browser") {
		t.Fatalf("the room shows everyone's messages: %q", list)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("USERSYNC_SCREENSHOT_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "chat-room.png"), png, 0o644)
	}
	do("back to everyone's room",
		chromedp.Click(chromedp.ID("room-everyone")),
		chromedp.WaitVisible(chromedp.Search(`//li[contains(., "Hello from the browser")]`)),
	)
	if list := text("#messages"); strings.Contains(list, "Hello Acme") {
		t.Fatalf("everyone's room shows the organization's messages: %q", list)
	}

	// Clerk removes Ada from Acme: after a reload (once the rooms are
	// listed again) the room is gone.
	if resp := sender.Send(base+"/clerk-users-webhook", adaAcme.event("organizationMembership.deleted")); resp.StatusCode != 200 {
		t.Fatalf("organizationMembership.deleted: %d", resp.StatusCode)
	}
	do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("room-everyone")))
	if gone, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("room-`+acme.id+`") === null`)); err != nil || !gone {
		t.Fatalf("the room of an organization Ada left still shows (%v)", err)
	}

	// Clerk deletes the user: her sessions end with her, so her page is
	// refused and signs out; signed in as Bob, the page shows her messages
	// by "deleted user", and erased once the change feed's consumer
	// erased them.
	if resp := sender.Send(base+"/clerk-users-webhook", clerktest.UserDeletedEvent("user_ada")); resp.StatusCode != 200 {
		t.Fatalf("user.deleted: %d", resp.StatusCode)
	}
	do("the deleted user's page signs out", chromedp.WaitVisible(chromedp.ID("devform")))
	do("sign in as Bob",
		chromedp.SetValue(chromedp.ID("devname"), "Bob"),
		chromedp.SetValue(chromedp.ID("devuser"), "user_bob"),
		chromedp.Click(chromedp.ID("devsignin")),
		chromedp.WaitVisible(chromedp.ID("chat")),
	)
	do("author becomes deleted user", chromedp.WaitVisible(chromedp.Search(`//li[contains(., "deleted user")]`)))
	stopConsumer := a.consumeInBackground(context.Background())
	defer stopConsumer()
	do("messages erased", chromedp.WaitVisible(chromedp.Search(`//li[contains(., "deleted user") and contains(., "[deleted]")]`)))
	if list := text("#messages"); strings.Contains(list, "Second message") {
		t.Fatalf("an erased message still shows: %q", list)
	}
	if list := text("#messages"); strings.Contains(list, "Ada Lovelace") {
		t.Fatalf("deleted author still named: %q", list)
	}
	png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("USERSYNC_SCREENSHOT_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "chat.png"), png, 0o644)
	}
	t.Logf("screenshot: %d bytes", len(png))
}
