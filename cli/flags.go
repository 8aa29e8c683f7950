package cli

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// Names of the global flags.
const (
	flagAddr     = "addr"
	flagOutput   = "output"
	flagTimeout  = "timeout"
	flagTemplate = "template"
)

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

func globalFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{
			Name:    flagAddr,
			Usage:   "controller `URL`s, comma-separated, tried in turn (host:port means http://host:port)",
			EnvVars: []string{"KUMOI_ADDR"},
			Value:   client.DefaultAddr,
		},
		&cli.StringFlag{
			Name:    flagOutput,
			Aliases: []string{"o"},
			Usage:   "output `FORMAT`: table, json or yaml",
			EnvVars: []string{"KUMOI_OUTPUT"},
			Value:   formatTable,
		},
		&cli.StringFlag{
			Name:    flagTemplate,
			Aliases: []string{"t"},
			Usage:   "print the answer through this Go `TEMPLATE` instead of a table (its data as -o json shows it; e.g. -t '{{range .}}{{.name}} {{.status.phase}}{{\"\\n\"}}{{end}}'; functions json, join, upper, lower)",
			EnvVars: []string{"KUMOI_TEMPLATE"},
		},
		&cli.DurationFlag{
			Name:  flagTimeout,
			Usage: "give up on a command after this `DURATION` (5m for a command run with --wait, unless given)",
			Value: 30 * time.Second,
		},
	}, securityFlags()...)
}

// checkGlobalFlags validates the global flags before any command runs.
func checkGlobalFlags(c *cli.Context) error {
	switch f := c.String(flagOutput); f {
	case formatTable, formatJSON, formatYAML:
	default:
		return usagef("invalid --output %q: use table, json or yaml", f)
	}
	if _, err := addrs(c); err != nil {
		return err
	}
	if t := c.String(flagTemplate); t != "" {
		if c.IsSet(flagOutput) && c.String(flagOutput) != formatTable {
			return usagef("give -t (a template) or -o %s, not both", c.String(flagOutput))
		}
		if _, err := parseTemplate(t); err != nil {
			return usagef("invalid -t template: %v", err)
		}
	}
	if d := c.Duration(flagTimeout); d <= 0 {
		return usagef("invalid --timeout %s: give a positive duration such as 30s or 2m", d)
	}
	return nil
}

// addrs splits and checks --addr.
func addrs(c *cli.Context) ([]string, error) {
	var out []string
	for _, a := range strings.Split(c.String(flagAddr), ",") {
		if strings.TrimSpace(a) == "" {
			continue
		}
		norm, err := client.NormalizeAddr(a)
		if err != nil {
			return nil, usagef("invalid --addr: %v", err)
		}
		out = append(out, norm)
	}
	if len(out) == 0 {
		return nil, usagef("--addr is empty: give a controller URL such as %s", client.DefaultAddr)
	}
	return out, nil
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// dashNameRe finds the flag names in the flag package's messages ("-cpus").
var dashNameRe = regexp.MustCompile(`(^|\s)-{1,2}([A-Za-z0-9][A-Za-z0-9_-]*)`)

// onUsageError turns the flag package's parse errors into usage errors
// that name the flag as it is written and say where to look.
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	msg = strings.Replace(msg, "flag provided but not defined: ", "unknown flag ", 1)
	msg = strings.Replace(msg, " for flag ", " for ", 1)
	msg = strings.Replace(msg, ": parse error", "", 1)
	msg = strings.Replace(msg, ": value out of range", ": out of range", 1)
	msg = dashNameRe.ReplaceAllStringFunc(msg, func(m string) string {
		sub := dashNameRe.FindStringSubmatch(m)
		return sub[1] + dashed(sub[2])
	})
	return usagef("%s; see '%s --help'", msg, c.Command.HelpName)
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// oneName returns the single NAME argument of a command.
func oneName(c *cli.Context, what string) (string, error) {
	switch c.NArg() {
	case 0:
		return "", usagef("missing %s name: %s", what, c.Command.UsageText)
	case 1:
		return c.Args().First(), nil
	}
	return "", usagef("too many arguments %q: %s takes one %s name; put flags before or after it", c.Args().Slice()[1:], c.Command.HelpName, what)
}

// noArgs rejects positional arguments.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unexpected argument %q: %s takes no arguments", c.Args().First(), c.Command.HelpName)
	}
	return nil
}

// parseLabels parses repeated --label KEY=VALUE flags.
func parseLabels(flag string, vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("invalid --%s %q: write KEY=VALUE, e.g. --%s app=web", flag, kv, flag)
		}
		if _, dup := out[k]; dup {
			return nil, usagef("--%s %s given twice", flag, k)
		}
		out[k] = v
	}
	if err := resource.ValidateLabels(out); err != nil {
		return nil, usagef("invalid --%s: %v", flag, fieldMsg(err))
	}
	return out, nil
}

// fieldMsg is a FieldError's message without its field path, for errors
// that are reported against a flag instead.
func fieldMsg(err error) string {
	if fe, ok := err.(*resource.FieldError); ok {
		return fe.Msg
	}
	return err.Error()
}

func checkChoice(flag, val string, choices ...string) error {
	for _, ch := range choices {
		if val == ch {
			return nil
		}
	}
	return usagef("invalid --%s %q: use %s", flag, val, joinList(choices, "or"))
}

// joinList writes "a, b or c".
func joinList(s []string, conj string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " " + conj + " " + s[len(s)-1]
}

// parseMemory parses --memory into MiB.
func parseMemory(flag, s string) (int64, error) {
	mib, err := resource.ParseMemoryMiB(s)
	if err != nil {
		return 0, usagef("invalid --%s: %v", flag, err)
	}
	return mib, nil
}

// permuteArgs lets flags follow positional arguments and lets the global
// flags appear after the command words ("kumoi vm get web -o json"), which
// urfave/cli v2 does not allow by itself: the Go flag package stops at the
// first non-flag. It walks the command words, moves global flags that a
// command does not define itself to the front, and puts a leaf command's
// flags before its positional arguments ("--" keeps the rest positional).
// Unknown flags stay where they are, so that parsing reports them.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	p := &argPermuter{globals: append([]cli.Flag{cli.HelpFlag}, app.Flags...), isRoot: true}
	p.level = p.globals
	path, rootEnd, rest := p.commandWords(app.Commands, args[1:])
	flags, positional := p.leafArgs(rest)
	// Hoisted flags go after the root's own, so that the last one given
	// wins as usual.
	out := append([]string{args[0]}, path[:rootEnd]...)
	out = append(out, p.hoisted...)
	out = append(out, path[rootEnd:]...)
	out = append(out, flags...)
	if slices.ContainsFunc(flags, func(f string) bool { return flagLen(f, nil, []cli.Flag{cli.HelpFlag}) > 0 }) {
		// "kumoi vm get web --help": help for the verb, not for a "web" topic.
		return out
	}
	for _, a := range positional {
		if strings.HasPrefix(a, "-") {
			out = append(out, "--")
			break
		}
	}
	return append(out, positional...)
}

// argPermuter is the state of permuteArgs as it walks the arguments.
type argPermuter struct {
	globals []cli.Flag // the root's flags (and --help)
	level   []cli.Flag // the flags of the command reached so far
	isRoot  bool       // no command word has been read yet
	hoisted []string   // global flags found after command words
}

// commandWords reads the command words and the flags between them from
// args, up to the first positional argument: path is what it read (global
// flags given after a command word left out, to be hoisted), rootEnd
// where the root's own flags end in path, and rest what follows: the leaf
// command's arguments.
func (p *argPermuter) commandWords(subs []*cli.Command, args []string) (path []string, rootEnd int, rest []string) {
	rest = args
	for len(rest) > 0 {
		tok := rest[0]
		if tok == "--" {
			return append(path, rest...), rootEnd, nil
		}
		if isFlagToken(tok) {
			var kept []string
			kept, rest = p.flag(rest)
			path = append(path, kept...)
			continue
		}
		cmd := findCommand(subs, tok)
		if cmd == nil {
			break // a positional argument: level is the leaf
		}
		if p.isRoot {
			rootEnd = len(path)
		}
		path = append(path, tok)
		rest = rest[1:]
		p.level = append([]cli.Flag{cli.HelpFlag}, cmd.Flags...)
		subs = cmd.Subcommands
		p.isRoot = false
	}
	return path, rootEnd, rest
}

// leafArgs sorts the leaf command's arguments, flags and positionals
// mixed, into its flags and its positional arguments (all of them after
// "--").
func (p *argPermuter) leafArgs(rest []string) (flags, positional []string) {
	for len(rest) > 0 {
		tok := rest[0]
		if tok == "--" {
			return flags, append(positional, rest[1:]...)
		}
		if !isFlagToken(tok) {
			positional = append(positional, tok)
			rest = rest[1:]
			continue
		}
		var kept []string
		kept, rest = p.flag(rest)
		flags = append(flags, kept...)
	}
	return flags, positional
}

// flag takes the flag at the head of rest (with its separate value, if
// it has one): a global flag that the current command does not define
// goes to p.hoisted; any other flag is kept where it is, returned in kept
// (an unknown one too, so that parsing reports it). after is what follows
// it.
func (p *argPermuter) flag(rest []string) (kept, after []string) {
	n := flagLen(rest[0], rest[1:], p.level)
	if n == 0 && !p.isRoot {
		if n = flagLen(rest[0], rest[1:], p.globals); n > 0 {
			p.hoisted = append(p.hoisted, rest[:n]...)
			return nil, rest[n:]
		}
	}
	n = max(n, 1)
	return rest[:n], rest[n:]
}

func isFlagToken(tok string) bool { return len(tok) > 1 && tok[0] == '-' }

// flagLen returns how many tokens the flag tok takes (1 or 2, counting a
// separate value), or 0 when tok is not one of flags.
func flagLen(tok string, following []string, flags []cli.Flag) int {
	name := strings.TrimLeft(tok, "-")
	name, _, hasValue := strings.Cut(name, "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if hasValue || !takesValue(f) || len(following) == 0 {
				return 1
			}
			return 2
		}
	}
	return 0
}

func takesValue(f cli.Flag) bool {
	if df, ok := f.(cli.DocGenerationFlag); ok {
		return df.TakesValue()
	}
	return true
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
