package cli

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// liveLine shows the progress of a long wait (--wait of vm verbs, host
// drain, migrations) on stderr. On a terminal it is one line redrawn in
// place, with the time waited so far; elsewhere (a pipe, a log, a test)
// each new state is a line of its own, as scripts expect.
type liveLine struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  string // the last state shown
	drawn bool   // a line is on the terminal, not yet ended
}

func newLiveLine(w io.Writer) *liveLine {
	return &liveLine{w: w, tty: isTerminal(w), start: time.Now()}
}

// show shows state, if it is new.
func (l *liveLine) show(state string) {
	if state == l.last {
		return
	}
	l.last = state
	if !l.tty {
		fmt.Fprintln(l.w, state)
		return
	}
	fmt.Fprintf(l.w, "\r\x1b[K%s  (%s)", state, time.Since(l.start).Round(time.Second))
	l.drawn = true
}

// finish ends the redrawn line, keeping the last state on the terminal.
func (l *liveLine) finish() {
	if l.drawn {
		fmt.Fprintln(l.w)
		l.drawn = false
	}
}

// bar is a progress bar of done out of total, width cells wide:
// "[#####-----] 2/5".
func bar(done, total, width int) string {
	if total <= 0 {
		return fmt.Sprintf("[%s] %d/%d", strings.Repeat("-", width), done, total)
	}
	n := min(width, done*width/total)
	return fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat("-", width-n), done, total)
}
