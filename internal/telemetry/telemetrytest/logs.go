package telemetrytest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Logs records what a logger logged, a line per record: its level, message
// and attributes ("INFO feed: took over consumer=x"). It is safe for
// concurrent use.
type Logs struct {
	mu    *sync.Mutex
	lines *[]string
	attrs string
}

// NewLogs returns an empty record and the logger that fills it.
func NewLogs() (*Logs, *slog.Logger) {
	l := &Logs{mu: new(sync.Mutex), lines: new([]string)}
	return l, slog.New(l)
}

// Enabled implements slog.Handler: every level is recorded.
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	line := fmt.Sprintf("%s %s%s", r.Level, r.Message, l.attrs)
	r.Attrs(func(a slog.Attr) bool { line += fmt.Sprintf(" %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.lines = append(*l.lines, line)
	return nil
}

// WithAttrs implements slog.Handler.
func (l *Logs) WithAttrs(as []slog.Attr) slog.Handler {
	attrs := l.attrs
	for _, a := range as {
		attrs += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return &Logs{mu: l.mu, lines: l.lines, attrs: attrs}
}

// WithGroup implements slog.Handler; groups are not recorded.
func (l *Logs) WithGroup(string) slog.Handler { return l }

// With returns the lines that begin with prefix (a level and a message).
func (l *Logs) With(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range *l.lines {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}

// Count returns how many lines begin with prefix.
func (l *Logs) Count(prefix string) int { return len(l.With(prefix)) }

// String returns every line.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(*l.lines, "\n")
}
