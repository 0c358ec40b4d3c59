package clerk_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/clerk/clerktest"
)

// Each way a delivery fails to verify names its reason with errors.Is.
// The provider's clock is fixed, so the timestamp cases are exact: the
// tolerance (default 5 minutes) holds up to its bound, either way.
func TestVerifyErrors(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const tolerance = 5 * time.Minute // clerk.Config.Tolerance's default
	signedAt := func(at time.Time) *clerktest.WebhookSender {
		s := clerktest.NewWebhookSender(t)
		s.Now = func() time.Time { return at }
		return s
	}
	sender := signedAt(now)
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer, WebhookSecrets: []string{sender.Secret}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"user.created"}`)
	at := func(d time.Duration) *clerktest.WebhookSender {
		s := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
		s.Now = func() time.Time { return now.Add(d) }
		return s
	}
	tests := []struct {
		name   string
		mutate func(h map[string]string)
		signer *clerktest.WebhookSender
		want   error
	}{
		{"valid", nil, sender, nil},
		{"no svix-id", func(h map[string]string) { h["svix-id"] = "" }, sender, clerk.ErrMissingHeaders},
		{"no svix-timestamp", func(h map[string]string) { h["svix-timestamp"] = "" }, sender, clerk.ErrMissingHeaders},
		{"no svix-signature", func(h map[string]string) { h["svix-signature"] = "" }, sender, clerk.ErrMissingHeaders},
		{"non-integer timestamp", func(h map[string]string) { h["svix-timestamp"] += ".5" }, sender, clerk.ErrBadSignature},
		{"timestamp with a leading zero", func(h map[string]string) { h["svix-timestamp"] = "0" + h["svix-timestamp"] }, sender, clerk.ErrBadSignature},
		{"timestamp with a plus sign", func(h map[string]string) { h["svix-timestamp"] = "+" + h["svix-timestamp"] }, sender, clerk.ErrBadSignature},
		{"timestamp well within the tolerance, old", nil, at(-tolerance / 2), nil},
		{"timestamp well within the tolerance, new", nil, at(tolerance / 2), nil},
		{"timestamp at the tolerance, old", nil, at(-tolerance), nil},
		{"timestamp at the tolerance, new", nil, at(tolerance), nil},
		{"timestamp a second too old", nil, at(-tolerance - time.Second), clerk.ErrTimestampSkew},
		{"timestamp a second too new", nil, at(tolerance + time.Second), clerk.ErrTimestampSkew},
		{"timestamp far too old", nil, at(-tolerance - time.Minute), clerk.ErrTimestampSkew},
		{"timestamp far too new", nil, at(tolerance + time.Minute), clerk.ErrTimestampSkew},
		{"signed with another secret", nil, signedAt(now), clerk.ErrBadSignature},
		{"another message's signature", func(h map[string]string) { h["svix-id"] = "msg_other" }, sender, clerk.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := tt.signer.Headers("msg_1", body)
			m := map[string]string{"svix-id": hdr.Get("svix-id"), "svix-timestamp": hdr.Get("svix-timestamp"), "svix-signature": hdr.Get("svix-signature")}
			if tt.mutate != nil {
				tt.mutate(m)
			}
			for k, v := range m {
				hdr.Set(k, v)
			}
			id, err := p.Verify(context.Background(), hdr, body)
			if !errors.Is(err, tt.want) || (tt.want == nil && id != "msg_1") {
				t.Fatalf("Verify = %q, %v; want %v", id, err, tt.want)
			}
		})
	}
}
