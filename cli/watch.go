package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
)

// watchFlag is --watch of the get and list verbs.
func watchFlag() cli.Flag {
	return &cli.BoolFlag{Name: "watch", Aliases: []string{"w"},
		Usage: "keep showing it, redrawn on every change (blocking queries, no polling) until Ctrl-C; on a terminal in place, else one copy per change"}
}

// watchWait is how long one blocking read of --watch waits.
const watchWait = 5 * time.Minute

// isTerminal says whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// watch shows what read returns, again each time it changes: read is
// first called with index 0, then with the index it returned, as a
// blocking query (client.QueryOptions.WaitIndex) that answers when the
// state passes that index (or after watchWait, unchanged). draw renders
// one answer to the writer it is given. On a terminal each new answer
// replaces the screen; otherwise each is printed after a line
// "--- <time> index N". It returns when ctx ends (Ctrl-C: no error) or a
// read fails.
func watch(c *cli.Context, read func(ctx context.Context, index uint64) (uint64, error), draw func(w io.Writer) error) error {
	ctx := c.Context
	out := c.App.Writer
	tty := isTerminal(out)
	var last []byte
	index := uint64(0)
	for {
		next, err := read(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
		if next < index {
			next = 0 // the state went back (a restore): start over
		}
		var buf bytes.Buffer
		if err := withWriter(c, &buf, draw); err != nil {
			return err
		}
		if index == 0 || !bytes.Equal(buf.Bytes(), last) {
			if tty {
				fmt.Fprint(out, "\x1b[H\x1b[2J") // home, clear
				fmt.Fprintf(out, "every change (index %d, %s); Ctrl-C to stop\n\n", next, time.Now().Format("15:04:05"))
			} else if index != 0 {
				fmt.Fprintf(out, "--- %s index %d\n", time.Now().UTC().Format(time.RFC3339), next)
			}
			if _, err := out.Write(buf.Bytes()); err != nil {
				return err
			}
			last = buf.Bytes()
		}
		index = max(next, 1)
	}
}

// withWriter runs draw with c's output going to w.
func withWriter(c *cli.Context, w io.Writer, draw func(io.Writer) error) error {
	saved := c.App.Writer
	c.App.Writer = w
	defer func() { c.App.Writer = saved }()
	return draw(w)
}

// watchOptions is opts for a --watch read after index.
func watchOptions(opts client.QueryOptions, index uint64) *client.QueryOptions {
	if index > 0 {
		opts.WaitIndex, opts.WaitTime = index, watchWait
	}
	return &opts
}
