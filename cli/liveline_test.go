package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestLiveLine: off a terminal every new state is a line (what scripts
// and the --wait tests read); on a terminal one line is redrawn in place
// and ended once; bar draws the share done.
func TestLiveLine(t *testing.T) {
	var b bytes.Buffer
	l := newLiveLine(&b)
	for _, s := range []string{"web: pending", "web: pending", "web: scheduled on hv-1", "web: running on hv-1"} {
		l.show(s)
	}
	l.finish()
	if got := b.String(); got != "web: pending\nweb: scheduled on hv-1\nweb: running on hv-1\n" {
		t.Errorf("off a terminal: %q", got)
	}

	b.Reset()
	l = newLiveLine(&b)
	l.tty = true // as on a terminal
	l.show("hv-1: [----] 0/2")
	l.show("hv-1: [##--] 1/2")
	l.show("hv-1: [##--] 1/2")
	l.finish()
	l.finish()
	got := b.String()
	if strings.Count(got, "\r\x1b[K") != 2 || !strings.HasSuffix(got, ")\n") || strings.Count(got, "\n") != 1 ||
		!strings.Contains(got, "\r\x1b[Khv-1: [##--] 1/2  (") {
		t.Errorf("on a terminal: %q", got)
	}

	for _, tc := range []struct {
		done, total int
		want        string
	}{{0, 5, "[----------] 0/5"}, {2, 5, "[####------] 2/5"}, {5, 5, "[##########] 5/5"}, {0, 0, "[----------] 0/0"}} {
		if got := bar(tc.done, tc.total, 10); got != tc.want {
			t.Errorf("bar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}
