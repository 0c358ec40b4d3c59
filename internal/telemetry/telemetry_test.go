package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TestCacheIsBounded: past Max keys, every new key shares the overflow's
// options, so a sender cannot grow a metric's label values.
func TestCacheIsBounded(t *testing.T) {
	made := 0
	c := Cache[string]{Max: 3, Overflow: "other", New: func(k string) Attrs {
		made++
		return NewAttrs(attribute.String("k", k))
	}}
	for i := range 100 {
		c.Get(fmt.Sprint(i % 10))
	}
	if made != 4 || len(c.m) != 4 {
		t.Fatalf("made %d option sets for %d keys, want 3 and the overflow", made, len(c.m))
	}
	if _, ok := c.m["other"]; !ok {
		t.Fatal("no overflow entry")
	}
}

// TestLoggerAddsTraceIDs: a line logged with an active span carries its
// IDs; without one, nothing is added; and wrapping twice adds them once.
func TestLoggerAddsTraceIDs(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want []string
		not  []string
	}{
		{"with a span", trace.ContextWithSpanContext(context.Background(), sc), []string{"trace_id=" + sc.TraceID().String(), "span_id=" + sc.SpanID().String(), "k=v"}, nil},
		{"without", context.Background(), []string{"k=v"}, []string{"trace_id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := Logger(Logger(slog.New(slog.NewTextHandler(&buf, nil)))).With("k", "v")
			l.InfoContext(tc.ctx, "hello")
			// In a group, the IDs stay at the top level.
			l.WithGroup("g").With("k", "w").InfoContext(tc.ctx, "grouped")
			if strings.Contains(buf.String(), "g.trace_id") || !strings.Contains(buf.String(), "g.k=w") {
				t.Errorf("grouped line: %q", buf.String())
			}
			for _, w := range tc.want {
				if strings.Count(buf.String(), w) != 2 {
					t.Errorf("%q lacks %s on each line", buf.String(), w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(buf.String(), n) {
					t.Errorf("%q has %s", buf.String(), n)
				}
			}
		})
	}
}
