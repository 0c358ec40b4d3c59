package clerk

import (
	"fmt"
	"log/slog"
	"strings"
)

// redacted stands for a secret in what a value prints or logs.
const redacted = "[redacted]"

// plainConfig is Config without its methods, to print a redacted copy.
type plainConfig Config

// redact returns c with its secrets replaced by redacted.
func (c Config) redact() plainConfig {
	if c.SecretKey != "" {
		c.SecretKey = redacted
	}
	if c.WebhookSecrets != nil {
		secrets := make([]string, len(c.WebhookSecrets))
		for i := range secrets {
			secrets[i] = redacted
		}
		c.WebhookSecrets = secrets
	}
	return plainConfig(c)
}

// Format prints the Config with every verb and flag of package fmt, its
// SecretKey and WebhookSecrets redacted.
func (c Config) Format(f fmt.State, verb rune) {
	s := fmt.Sprintf(fmt.FormatString(f, verb), c.redact())
	if verb == 'v' && f.Flag('#') {
		s = strings.Replace(s, "clerk.plainConfig", "clerk.Config", 1)
	}
	fmt.Fprint(f, s)
}

// LogValue logs the Config's issuer and URLs, and whether it has a secret
// key and how many webhook secrets, never them.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("issuer", c.Issuer), slog.String("jwks_url", c.JWKSURL), slog.String("api_url", c.APIURL),
		slog.Bool("secret_key", c.SecretKey != ""), slog.Int("webhook_secrets", len(c.WebhookSecrets)),
	)
}

// Format prints the Provider as its issuer, with every verb: it holds the
// secret key and the webhook secrets.
func (p Provider) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "clerk.Provider{Issuer: %q}", p.cfg.Issuer)
}

// LogValue logs the Provider's issuer.
func (p Provider) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", p.cfg.Issuer))
}

// Format prints the UserList as its issuer and Backend API URL, with
// every verb: it holds the secret key.
func (l *UserList) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "clerk.UserList{Issuer: %q, APIURL: %q}", l.p.cfg.Issuer, l.api.base)
}

// LogValue logs the UserList's issuer and Backend API URL.
func (l *UserList) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", l.p.cfg.Issuer), slog.String("api_url", l.api.base))
}

// Format prints the OrganizationList as its issuer and Backend API URL,
// with every verb: it holds the secret key.
func (l *OrganizationList) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "clerk.OrganizationList{Issuer: %q, APIURL: %q}", l.p.cfg.Issuer, l.api.base)
}

// LogValue logs the OrganizationList's issuer and Backend API URL.
func (l *OrganizationList) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", l.p.cfg.Issuer), slog.String("api_url", l.api.base))
}

// Format prints the SessionStatus as its issuer and Backend API URL, with
// every verb: it holds the secret key. A nil one (App.SessionStatus
// without a secret key) prints as <nil>.
func (s *SessionStatus) Format(f fmt.State, _ rune) {
	if s == nil {
		fmt.Fprint(f, "<nil>")
		return
	}
	fmt.Fprintf(f, "clerk.SessionStatus{Issuer: %q, APIURL: %q}", s.issuer, s.api.base)
}

// LogValue logs the SessionStatus's issuer and Backend API URL; a nil one
// as an empty group.
func (s *SessionStatus) LogValue() slog.Value {
	if s == nil {
		return slog.GroupValue()
	}
	return slog.GroupValue(slog.String("issuer", s.issuer), slog.String("api_url", s.api.base))
}
