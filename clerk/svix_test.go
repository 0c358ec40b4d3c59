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
func TestVerifyErrors(t *testing.T) {
	sender := clerktest.NewWebhookSender(t)
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer, WebhookSecrets: []string{sender.Secret}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"user.created"}`)
	signedAt := func(at time.Time) *clerktest.WebhookSender {
		s := clerktest.NewWebhookSenderWithSecret(t, sender.Secret)
		s.Now = func() time.Time { return at }
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
		{"timestamp too old", nil, signedAt(time.Now().Add(-5*time.Minute - time.Second)), clerk.ErrTimestampSkew},
		{"timestamp too new", nil, signedAt(time.Now().Add(5*time.Minute + 2*time.Second)), clerk.ErrTimestampSkew},
		{"signed with another secret", nil, clerktest.NewWebhookSender(t), clerk.ErrBadSignature},
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
