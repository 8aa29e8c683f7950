// Package logring keeps the last lines an agent logged, for kumoi operator
// debug (GET /v1/agent/logs): an io.Writer that remembers at most a
// number of bytes of whole lines, dropping the oldest.
package logring

import (
	"bytes"
	"sync"
)

// DefaultSize is how many bytes of log an agent keeps.
const DefaultSize = 1 << 20

// Ring is the tail of a log. Its zero value keeps nothing; use New.
type Ring struct {
	mu    sync.Mutex
	max   int
	lines [][]byte // oldest first
	size  int
	part  []byte // an unfinished last line
}

// New returns a Ring that keeps at most max bytes of lines.
func New(max int) *Ring { return &Ring{max: max} }

// Write records p (whole lines; a line split over writes is joined).
// It never fails.
func (r *Ring) Write(p []byte) (int, error) {
	if r == nil || r.max <= 0 {
		return len(p), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			r.part = append(r.part, rest...)
			if len(r.part) > r.max {
				r.part = r.part[len(r.part)-r.max:]
			}
			break
		}
		line := append(r.part, rest[:i+1]...)
		r.part = nil
		rest = rest[i+1:]
		if len(line) > r.max {
			line = line[len(line)-r.max:]
		}
		r.lines = append(r.lines, line)
		r.size += len(line)
		for r.size > r.max {
			r.size -= len(r.lines[0])
			r.lines[0] = nil
			r.lines = r.lines[1:]
		}
	}
	return len(p), nil
}

// Tail returns the last n lines kept (all when n <= 0), oldest first.
func (r *Ring) Tail(n int) []byte {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	lines := r.lines
	if n > 0 && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	var out bytes.Buffer
	for _, l := range lines {
		out.Write(l)
	}
	return out.Bytes()
}
