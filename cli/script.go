package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/chzyer/readline"
	"github.com/urfave/cli/v2"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/script"
)

const scriptLimitsHelp = `
Limits: a script stops after --max-steps Starlark steps (default %d, counted
over all its threads; a tight loop runs some tens of millions a second, and
waiting for the cluster costs none) or after --timeout of wall-clock time
(default %s for a script; in the shell, for each statement). Ctrl-C stops it
too.`

func maxStepsFlag() *cli.Uint64Flag {
	return &cli.Uint64Flag{
		Name:        "max-steps",
		Usage:       "stop the script after `N` Starlark steps",
		DefaultText: fmt.Sprint(script.DefaultMaxSteps),
	}
}

func runCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "run",
		Usage:     "run a Kumoi script (Starlark) against the cluster",
		UsageText: "kumoi run [--max-steps N] [--timeout DURATION] FILE.star [--] [ARG...]\n   kumoi run -e CODE [--] [ARG...]",
		Description: `Runs a script written in Starlark (a small Python dialect) in which the
cluster's VMs and hosts are values: vms("tier=web") lists VMs, v.reboot()
reboots one, pmap(fn, xs, workers=4) maps fn over xs four at a time. The
arguments after the file (after -- when they look like flags) are in the
global list argv, as strings. print() writes to standard output.

With -e the script is CODE itself; when CODE is one expression, its value is
printed (a list of VMs or hosts as a table).

On error the command prints the Starlark backtrace (file:line of every
call) or, for a syntax error, file:line:col and the offending line, and
exits with status 1 (130 when interrupted). See docs/scripting.md for the
built-ins.
` + fmt.Sprintf(scriptLimitsHelp, script.DefaultMaxSteps, script.DefaultTimeout) + `

Examples:
   kumoi run rolling-reboot.star -- tier=web 4
   kumoi run -e 'vms("tier=web")'
   kumoi run -e 'pmap(lambda v: v.stop(), vms("tier=batch"), workers=8)'
   kumoi run --max-steps 1000000 --timeout 2m report.star`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "eval", Aliases: []string{"e"}, Usage: "run `CODE` instead of a file"},
			maxStepsFlag(),
		},
		Action: runScript,
	})
}

func shellCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "shell",
		Usage:     "an interactive Kumoi script shell (Starlark REPL) connected to the cluster",
		UsageText: "kumoi shell [--max-steps N] [--timeout DURATION]",
		Description: `Reads statements, runs them against the cluster and prints the value of
each expression: a VM or host, or a list of them, as the table of 'kumoi vm
list' or 'kumoi host list'; the failures of a parallel skeleton as a table
of ITEM and ERROR; anything else as Starlark prints it. The last value is
in _.

Line editing and history (~/.kumoi_history) as in a shell; Tab completes
built-ins, global names and, after "name.", the attributes and methods of a
global (v.<Tab>). A def, if, for or while block continues on "... " lines
until an empty line; so does a line with an open bracket until it closes.
Ctrl-C abandons the line being typed or stops the running statement;
Ctrl-D leaves.

When standard input is not a terminal (a pipe or a file), the statements are
read from it without prompts or editing, errors go to standard error and the
command exits with status 1 if any statement failed.
` + fmt.Sprintf(scriptLimitsHelp, script.DefaultMaxSteps, script.DefaultTimeout) + `

Examples:
   kumoi shell
   >>> web = vms("tier=web")
   >>> pmap(lambda v: v.reboot(), web, workers=4)
   echo 'hosts()' | kumoi shell`,
		Flags:  []cli.Flag{maxStepsFlag()},
		Action: shellAction,
	})
}

// scriptEnv makes the script environment from the flags.
func scriptEnv(c *cli.Context) (script.Env, error) {
	as, err := addrs(c)
	if err != nil {
		return script.Env{}, err
	}
	// The script acts with the caller's token and TLS settings.
	cfg, err := clientConfig(c, as)
	if err != nil {
		return script.Env{}, err
	}
	// Scripts write from many goroutines at once (pmap, pfilter): their
	// writes go on one request stream per controller (docs/api.md
	// "Request streams"), HTTP where a controller takes none.
	cfg.Stream = true
	cl, err := client.New(cfg)
	if err != nil {
		return script.Env{}, usagef("%v", err)
	}
	env := script.Env{Client: cl, Out: c.App.Writer, MaxSteps: c.Uint64("max-steps")}
	if c.IsSet("max-steps") && env.MaxSteps == 0 {
		return env, usagef("invalid --max-steps 0: give a positive number of steps")
	}
	if c.IsSet(flagTimeout) {
		env.Timeout = c.Duration(flagTimeout)
	}
	return env, nil
}

func runScript(c *cli.Context) error {
	env, err := scriptEnv(c)
	if err != nil {
		return err
	}
	defer env.Client.Close()
	args := c.Args().Slice()
	var filename string
	var src []byte
	if c.IsSet("eval") {
		filename, src = "-e", []byte(c.String("eval"))
	} else {
		if len(args) == 0 {
			return usagef("missing script: kumoi run FILE.star [-- ARG...], or kumoi run -e CODE")
		}
		filename, args = args[0], args[1:]
		if src, err = os.ReadFile(filename); err != nil {
			return fmt.Errorf("cannot read the script: %w", err)
		}
	}
	v, err := script.NewSession(env, args).Exec(c.Context, filename, src)
	if err != nil {
		return scriptFailed(c, err)
	}
	if c.IsSet("eval") {
		return render(c.App.Writer, v)
	}
	return nil
}

// scriptFailed reports a script's error on stderr, whole (a backtrace has
// several lines), and returns the exit status: 130 when interrupted, 1
// otherwise.
func scriptFailed(c *cli.Context, err error) error {
	fmt.Fprintln(c.App.ErrWriter, scriptErrorText(err))
	if errors.Is(err, script.ErrInterrupted) {
		return cli.Exit("", exitInterrupted)
	}
	return cli.Exit("", exitError)
}

// scriptErrorText is a script error with a hint at the flag that raises a
// limit.
func scriptErrorText(err error) string {
	text := err.Error()
	var unreachable *client.UnreachableError
	switch {
	case errors.Is(err, script.ErrStepLimit):
		text += " (raise it with --max-steps)"
	case errors.Is(err, script.ErrTimeLimit):
		text += " (raise it with --timeout)"
	case errors.As(err, &unreachable):
		text += " (is the agent running? set --addr or KUMOI_ADDR)"
	case client.IsUnauthenticated(err):
		text += " (the API wants a valid ACL token: set --token or KUMOI_TOKEN)"
	}
	return text
}

// render prints a value the shell's way: objects as tables, failures as
// a table of ITEM and ERROR, anything else as Starlark prints it; nothing
// for None.
func render(w io.Writer, v starlark.Value) error {
	if v == nil || v == starlark.None {
		return nil
	}
	if o, ok := script.Object(v); ok {
		return objectTable(w, o.Kind, []*resource.Object{o}, 0)
	}
	seq, ok := v.(starlark.Indexable)
	if _, isString := v.(starlark.String); !ok || isString || seq.Len() == 0 {
		_, err := fmt.Fprintln(w, v.String())
		return err
	}
	var (
		objs  []*resource.Object
		fails []*script.Failure
		kind  resource.Kind
	)
	for i := range seq.Len() {
		x := seq.Index(i)
		if f, ok := x.(*script.Failure); ok {
			fails = append(fails, f)
			continue
		}
		o, ok := script.Object(x)
		if !ok || (kind != "" && o.Kind != kind) {
			_, err := fmt.Fprintln(w, v.String())
			return err
		}
		kind = o.Kind
		objs = append(objs, o)
	}
	if len(objs) > 0 {
		if err := objectTable(w, kind, objs, reasonWidth); err != nil {
			return err
		}
	}
	if len(fails) > 0 {
		if len(objs) > 0 {
			fmt.Fprintf(w, "%d of %d failed:\n", len(fails), seq.Len())
		}
		t := newFreeTextTable(w, "ITEM", "ERROR")
		for _, f := range fails {
			item := f.Item.String()
			if o, ok := script.Object(f.Item); ok {
				item = o.Name
			}
			t.row(item, f.Err)
		}
		return t.flush()
	}
	return nil
}

// historyFile is where the shell keeps its history ("" when there is no
// home directory).
func historyFile() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".kumoi_history")
}

// lineSource is where the shell reads its lines: a terminal with editing,
// or a plain reader.
type lineSource interface {
	// readLine returns one line with its newline; prompt is shown first.
	readLine(prompt string) ([]byte, error)
	close() error
}

type plainLines struct{ r *bufio.Reader }

func (p *plainLines) readLine(string) ([]byte, error) {
	line, err := p.r.ReadString('\n')
	if err == io.EOF && line != "" {
		line, err = line+"\n", nil // the last line, without its newline
	}
	return []byte(line), err
}

func (p *plainLines) close() error { return nil }

type terminalLines struct{ rl *readline.Instance }

func (t *terminalLines) readLine(prompt string) ([]byte, error) {
	t.rl.SetPrompt(prompt)
	line, err := t.rl.Readline()
	if err != nil {
		return nil, err
	}
	return []byte(line + "\n"), nil
}

func (t *terminalLines) close() error { return t.rl.Close() }

// completer completes the shell's names and attributes.
type completer struct{ sess *script.Session }

// Do implements readline.AutoCompleter: the candidates are the rest of
// each completion, and length how much of the word is typed already.
func (cp completer) Do(line []rune, pos int) ([][]rune, int) {
	prefix := string(line[:pos])
	var out [][]rune
	for _, c := range cp.sess.Complete(prefix) {
		out = append(out, []rune(c[len(prefix):]))
	}
	word := prefix[strings.LastIndexAny(prefix, " \t()[]{},:=+-*/%<>!.")+1:]
	return out, len([]rune(word))
}

func shellAction(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	env, err := scriptEnv(c)
	if err != nil {
		return err
	}
	defer env.Client.Close()
	sess := script.NewSession(env, nil)
	src, interactive, err := shellInput(c, env, sess)
	if err != nil {
		return err
	}
	defer src.close()
	failed := false
	for {
		prompt := ">>> "
		f, text, err := sess.ReadChunk("<stdin>", func() ([]byte, error) {
			line, err := src.readLine(prompt)
			prompt = "... "
			return line, err
		})
		switch {
		case errors.Is(err, io.EOF):
			if failed {
				return cli.Exit("", exitError)
			}
			return nil
		case errors.Is(err, readline.ErrInterrupt):
			continue // the line typed so far is abandoned
		case err != nil:
			failed = true
			fmt.Fprintln(c.App.ErrWriter, scriptErrorText(err))
			continue
		}
		if len(f.Stmts) == 0 {
			continue // an empty line
		}
		v, err := execStatement(c, sess, f, text, interactive)
		if err != nil {
			failed = true
			fmt.Fprintln(c.App.ErrWriter, scriptErrorText(err))
			if !interactive && c.Context.Err() != nil {
				return cli.Exit("", exitInterrupted)
			}
			continue
		}
		if err := render(c.App.Writer, v); err != nil {
			return err
		}
	}
}

// shellInput is where the shell reads its lines: a line editor with
// history and completion when standard input is a terminal (interactive),
// plain lines otherwise.
func shellInput(c *cli.Context, env script.Env, sess *script.Session) (src lineSource, interactive bool, err error) {
	in := c.App.Reader
	if in == nil {
		in = os.Stdin
	}
	f, isFile := in.(*os.File)
	if !isFile || !readline.IsTerminal(int(f.Fd())) {
		return &plainLines{r: bufio.NewReader(in)}, false, nil
	}
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          ">>> ",
		HistoryFile:     historyFile(),
		AutoComplete:    completer{sess: sess},
		InterruptPrompt: "^C",
		EOFPrompt:       "",
		Stdin:           f,
		Stdout:          c.App.Writer,
		Stderr:          c.App.ErrWriter,
	})
	if err != nil {
		return nil, true, fmt.Errorf("cannot start the line editor: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "Kumoi shell (Starlark), talking to %s. Tab completes; Ctrl-D leaves.\n",
		strings.Join(env.Client.Addrs(), ", "))
	return &terminalLines{rl: rl}, true, nil
}

// execStatement runs one statement. At a terminal, Ctrl-C stops that
// statement only, not the shell.
func execStatement(c *cli.Context, sess *script.Session, f *syntax.File, text []byte, interactive bool) (starlark.Value, error) {
	if !interactive {
		return sess.ExecChunk(c.Context, f, text)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Context))
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	return sess.ExecChunk(ctx, f, text)
}
