package jwtverify_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/usersynctest"
)

// The active organization comes from Clerk's v2 "o" claim or its v1
// org_* claims; claims of another shape (another issuer's) are ignored,
// never a reason to refuse the token.
func TestVerifyOrganizationClaims(t *testing.T) {
	a := usersynctest.NewIssuer(t)
	v := newVerifier(t, nil, a)
	for _, c := range []struct {
		name   string
		claims map[string]any
		want   *usersync.OrganizationClaim
	}{
		{"none", nil, nil},
		{"v2", map[string]any{"o": map[string]any{"id": "org_1", "slg": "acme", "rol": "admin", "per": "read,manage", "fpm": "3"}},
			&usersync.OrganizationClaim{ID: "org_1", Slug: "acme", Role: "org:admin"}},
		{"v2 with a prefixed role", map[string]any{"o": map[string]any{"id": "org_1", "rol": "org:billing"}},
			&usersync.OrganizationClaim{ID: "org_1", Role: "org:billing"}},
		{"v1", map[string]any{"org_id": "org_2", "org_slug": "beta", "org_role": "org:member", "org_permissions": []string{"org:sys_profile:read"}},
			&usersync.OrganizationClaim{ID: "org_2", Slug: "beta", Role: "org:member", Permissions: []string{"org:sys_profile:read"}}},
		{"v2 before v1", map[string]any{"o": map[string]any{"id": "org_1", "rol": "admin"}, "org_id": "org_2"},
			&usersync.OrganizationClaim{ID: "org_1", Role: "org:admin"}},
		{"v1 with claims of other shapes", map[string]any{"org_id": "org_2", "org_slug": 7, "org_role": []int{1}, "org_permissions": "all"},
			&usersync.OrganizationClaim{ID: "org_2"}},
		{"an o of another shape", map[string]any{"o": "other", "org_id": "org_3"}, &usersync.OrganizationClaim{ID: "org_3"}},
		{"an o without an id", map[string]any{"o": map[string]any{"rol": "admin"}}, nil},
		{"an org_id of another shape", map[string]any{"org_id": 12}, nil},
		{"an empty org_id", map[string]any{"org_id": ""}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims := map[string]any{"sub": "user_1"}
			for k, val := range c.claims {
				claims[k] = val
			}
			id, err := v.Verify(context.Background(), a.Token(claims))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(id.Organization, c.want) {
				t.Fatalf("Organization = %+v, want %+v", id.Organization, c.want)
			}
		})
	}
}
