package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/usersync/usersync/reconcile"
)

// progress shows a reconcile's progress: a bar redrawn in place on a
// terminal, else a line whenever a page crosses a tenth of the users.
type progress struct {
	w        io.Writer
	terminal bool
	quiet    bool
	drawn    bool // a bar is on the current line
	tenth    int  // tenths already reported as lines
	now      func() time.Time
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, now: time.Now}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// update shows r.
func (p *progress) update(r reconcile.Report) {
	if p.quiet || !r.Finished.IsZero() {
		return
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r%s", bar(r, p.now()))
		p.drawn = true
		return
	}
	if r.Total <= 0 {
		return
	}
	if tenth := min(r.Listed*10/r.Total, 10); tenth > p.tenth {
		p.tenth = tenth
		fmt.Fprintln(p.w, line(r, p.now()))
	}
}

// done ends the bar's line.
func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// bar renders r as a bar: "[=====>     ]  45% 45000/100000 · 12345 users/s".
func bar(r reconcile.Report, now time.Time) string {
	const width = 30
	frac := 1.0
	if r.Total > 0 {
		frac = min(float64(r.Listed)/float64(r.Total), 1)
	}
	full := int(frac * width)
	b := strings.Repeat("=", full)
	if full < width {
		b += ">" + strings.Repeat(" ", width-full-1)
	}
	return fmt.Sprintf("[%s] %3.0f%% %s", b, frac*100, line(r, now))
}

// line renders r's counts and rate.
func line(r reconcile.Report, now time.Time) string {
	rate := 0.0
	if d := now.Sub(r.Started).Seconds(); d > 0 {
		rate = float64(r.Listed) / d
	}
	return fmt.Sprintf("%d/%d users · created %d, updated %d, unchanged %d, skipped %d · %.0f users/s",
		r.Listed, r.Total, r.Created, r.Updated, r.Unchanged, r.Skipped, rate)
}
