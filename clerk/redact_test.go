package clerk_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
)

// Every type that holds a secret prints and logs without it, whatever
// the verb, the flag or the handler.
func TestSecretsNeverPrint(t *testing.T) {
	const secretKey = "sk_test_do_not_print_me"
	sender := clerktest.NewWebhookSender(t)
	cfg := clerk.Config{Issuer: clerkIssuer, SecretKey: secretKey, WebhookSecrets: []string{sender.Secret}, PublicKeyPEM: clerktest.NewAPI(t).PublicKeyPEM()}
	p, err := clerk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.UserList()
	if err != nil {
		t.Fatal(err)
	}
	strict, err := p.SessionStatus(clerk.SessionStatusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The secret of a whsec_ is its base64 part: check both.
	secrets := []string{secretKey, sender.Secret, strings.TrimPrefix(sender.Secret, "whsec_")}
	for name, v := range map[string]any{
		"Config": cfg, "*Config": &cfg, "*Provider": p, "Provider": *p, "*UserList": l, "*SessionStatus": strict,
		"nested": struct {
			C clerk.Config
			L *clerk.UserList
			S *clerk.SessionStatus
		}{cfg, l, strict},
	} {
		var out bytes.Buffer
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		fmt.Fprintln(&out, v)
		slog.New(slog.NewTextHandler(&out, nil)).Info("m", "v", v)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("m", "v", v)
		for _, s := range secrets {
			for _, enc := range []string{s, fmt.Sprintf("%x", s), fmt.Sprintf("%X", s)} {
				if strings.Contains(out.String(), enc) {
					t.Errorf("%s prints a secret:\n%s", name, out.String())
				}
			}
		}
		if !strings.Contains(out.String(), clerkIssuer) {
			t.Errorf("%s does not print its issuer:\n%s", name, out.String())
		}
	}
	// The redacted copy leaves the config itself as it was.
	if cfg.SecretKey != secretKey || cfg.WebhookSecrets[0] != sender.Secret {
		t.Fatal("printing changed the config")
	}
}
