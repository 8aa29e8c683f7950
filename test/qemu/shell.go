package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// VirshShell is one interactive virsh holding one connection to a daemon:
// listing its domains costs a round trip, not a process and a connection,
// so a test can watch a daemon densely. Fed by a pipe, virsh still prints
// its prompt and echoes each command ("virsh # list --name"); an echo
// command marks the end of each answer.
type VirshShell struct {
	uri    string
	cmd    *exec.Cmd
	in     io.WriteCloser
	chunks chan []byte
	buf    []byte
	n      int
}

// NewVirshShell starts virsh against uri.
func NewVirshShell(uri string) (*VirshShell, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("virsh", "-q", "-c", uri)
	cmd.Stdout, cmd.Stderr = pw, pw // errors come in order with the output
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pw.Close()
	s := &VirshShell{uri: uri, cmd: cmd, in: in, chunks: make(chan []byte, 256)}
	go func() {
		defer close(s.chunks)
		defer pr.Close()
		for {
			b := make([]byte, 4096)
			n, err := pr.Read(b)
			if n > 0 {
				s.chunks <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return s, nil
}

// Active lists the active domains (`list --name`), waiting at most
// timeout for the answer. Any "error:" line virsh prints is an error.
func (s *VirshShell) Active(timeout time.Duration) ([]string, error) {
	s.n++
	// The quotes keep the echoed command from containing the marker.
	mark := fmt.Sprintf("kumoi-mark %d", s.n)
	if _, err := fmt.Fprintf(s.in, "list --name\necho \"kumoi-mark\" \"%d\"\n", s.n); err != nil {
		return nil, fmt.Errorf("virsh -c %s: %w", s.uri, err)
	}
	deadline := time.After(timeout)
	for {
		if i := strings.Index(string(s.buf), mark); i >= 0 {
			text := string(s.buf[:i])
			s.buf = s.buf[i+len(mark):]
			var names, errs []string
			for _, l := range strings.Split(text, "\n") {
				l = strings.TrimSpace(l)
				switch {
				case l == "" || strings.HasPrefix(l, "virsh #"):
				case strings.HasPrefix(l, "error:"):
					errs = append(errs, l)
				default:
					names = append(names, l)
				}
			}
			if len(errs) > 0 {
				return nil, fmt.Errorf("virsh -c %s list: %s", s.uri, strings.Join(errs, "; "))
			}
			return names, nil
		}
		select {
		case b, ok := <-s.chunks:
			if !ok {
				return nil, fmt.Errorf("virsh -c %s ended: %q", s.uri, s.buf)
			}
			s.buf = append(s.buf, b...)
		case <-deadline:
			return nil, errors.Join(fmt.Errorf("virsh -c %s list: no answer within %v", s.uri, timeout), s.Close())
		}
	}
}

// Close ends virsh.
func (s *VirshShell) Close() error {
	s.in.Close()
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	return nil
}
