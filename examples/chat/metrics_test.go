package main

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync/clerk/clerktest"
)

// TestMetricsPage: after a webhook and a verified request, GET /metrics
// shows usersync's deliveries, verifications and store operations in the
// Prometheus text format.
func TestMetricsPage(t *testing.T) {
	ta := newTestApp(t, backends(t)["sqlite"])
	ev := clerktest.UserEvent("user.created", clerktest.User{ID: "user_1", FirstName: clerktest.Str("Ada"), Email: "ada@example.com", UpdatedAt: time.Now()})
	expect(t, "webhook", recorder(ta.h, ta.sender.Request("/clerk-users-webhook", ev)), 200)
	tok := ta.issuer.Token(map[string]any{"sub": "user_1"})
	expect(t, "me", ta.do("GET", "/api/users/me", tok, nil), 200)

	w := ta.do("GET", "/metrics", "", nil)
	expect(t, "metrics", w, 200)
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q", ct)
	}
	page := w.Body.String()
	for _, c := range []struct{ metric, labels string }{
		{"usersync_webhook_deliveries_total", `outcome="created",type="user.created"`},
		{"usersync_token_verifications_total", `result="ok"`},
		{"usersync_store_operation_duration_seconds_count", `db_system_name="sqlite",operation="upsert",outcome="ok"`},
		{"usersync_store_operation_duration_seconds_count", `operation="get_by_token_identifier",outcome="ok"`},
	} {
		if v := sample(page, c.metric, c.labels); v <= 0 {
			t.Errorf("%s{%s} = %v, want above 0; the page:\n%s", c.metric, c.labels, v, page)
		}
	}
	if strings.Contains(page, "ada@example.com") || strings.Contains(page, "user_1") {
		t.Error("the metrics page carries personal data")
	}
}

// sample returns the value of the first sample of metric whose labels
// include every label of want ("a=\"1\",b=\"2\"", in any order), or -1.
func sample(page, metric, want string) float64 {
	sc := bufio.NewScanner(strings.NewReader(page))
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || name != metric {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		all := true
		for _, l := range strings.Split(want, ",") {
			if !strings.Contains(","+labels+",", ","+l+",") {
				all = false
			}
		}
		if all {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
