package clerk_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
)

func TestDecode(t *testing.T) {
	p, err := clerk.New(clerk.Config{Issuer: clerkIssuer})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		body    string
		wantErr string // a part of the error text; "" for success
		check   func(t *testing.T, ev usersync.Event)
	}{
		{"user.created", `{"type":"user.created","data":{"id":"user_1","first_name":"Ada","last_name":null,"updated_at":1700000000000}}`, "", func(t *testing.T, ev usersync.Event) {
			w := ev.Write
			if ev.Delete || w == nil || w.Issuer != clerkIssuer || w.Subject != "user_1" || w.Version != 1700000000000 || w.Fields != usersync.AllFields || w.Profile.Name != "Ada" {
				t.Fatalf("event %+v / %+v", ev, w)
			}
		}},
		{"user.deleted", `{"type":"user.deleted","data":{"id":"user_1","deleted":true}}`, "", func(t *testing.T, ev usersync.Event) {
			if !ev.Delete || ev.Write == nil || ev.Write.Subject != "user_1" || ev.Write.Issuer != clerkIssuer {
				t.Fatalf("event %+v", ev)
			}
		}},
		{"another type", `{"type":"session.created","data":{"id":"sess_1"}}`, "", func(t *testing.T, ev usersync.Event) {
			if ev.Write != nil || ev.Type != "session.created" {
				t.Fatalf("event %+v", ev)
			}
		}},
		{"another type with other data shapes", `{"type":"organization.created","data":{"id":"org_1","first_name":42}}`, "", func(t *testing.T, ev usersync.Event) {
			if ev.Write != nil || ev.Type != "organization.created" {
				t.Fatalf("event %+v", ev)
			}
		}},
		{"malformed JSON", `{"type":"user.created","data":`, "malformed event JSON", nil},
		{"wrong field types", `{"type":"user.created","data":{"id":"user_1","first_name":42,"updated_at":1}}`, "malformed event JSON", nil},
		{"missing type", `{"data":{"id":"user_1"}}`, "without a type", nil},
		{"missing data.id", `{"type":"user.deleted","data":{"deleted":true}}`, "without data.id", nil},
		{"missing updated_at", `{"type":"user.updated","data":{"id":"user_1"}}`, "without data.updated_at", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := p.Decode(context.Background(), []byte(tt.body))
			if tt.wantErr != "" {
				if !errors.Is(err, usersync.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, ev)
		})
	}
}
