package cli

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/urfave/cli/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// The agent's configuration file (kumoi agent -config FILE): HCL, every
// agent flag under its name with "_" for "-" (node_id = "c1"), and blocks
// for the flags that share a prefix (tls { ca = "…" } is --tls-ca; a
// block's "enabled" is the flag of the block's own name: acl { enabled =
// true }). The command line and the environment override the file. See
// docs/operations.md, "Configuration file".

// configFileFlags are kumoi agent's flags about the file itself.
func configFileFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: []string{"KUMOI_CONFIG"}, Usage: "read settings from this HCL `FILE` (every flag under its name with _ for -, e.g. node_id = \"c1\"; blocks tls { ca = … }, acl { enabled = … }); flags and environment variables override it (docs/operations.md)"},
		&cli.BoolFlag{Name: "validate", Usage: "check the flags and -config file and exit: 0 when the agent would start with them, 2 with what is wrong"},
	}
}

// notInFile are the agent flags a configuration file cannot set.
var notInFile = map[string]bool{"config": true, "validate": true, "help": true}

// configError is a mistake in the configuration file, at a position.
type configError struct {
	file string
	line int
	msg  string
}

func (e configError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
	}
	return e.file + ": " + e.msg
}

// envFunc is the file's env("NAME"): an environment variable ("" when
// unset), for settings kept out of the file (secrets are best given as
// the flags' own variables: KUMOI_TOKEN, KUMOI_GOSSIP_KEY, …).
var envFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "name", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(os.Getenv(args[0].AsString())), nil
	},
})

// loadAgentConfig applies the settings of the HCL file path to the flags
// of c that neither the command line nor the environment set. Every
// mistake is reported, each with its file and line.
func loadAgentConfig(c *cli.Context, path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return usagef("-config: %v", err)
	}
	file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return usagef("%s", diagsText(diags))
	}
	body, ok := file.Body.(*hclsyntax.Body)
	if !ok {
		return usagef("%s: not an HCL file", path)
	}
	flags := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		if name := f.Names()[0]; !notInFile[name] {
			flags[name] = f
		}
	}
	ctx := &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc}}
	var errs []error
	fail := func(r hcl.Range, format string, args ...any) {
		errs = append(errs, configError{file: r.Filename, line: r.Start.Line, msg: fmt.Sprintf(format, args...)})
	}
	setBy := map[string]string{} // flag -> the setting that set it
	apply := func(setting, flag string, attr *hclsyntax.Attribute) {
		f, ok := flags[flag]
		if !ok {
			fail(attr.SrcRange, "unknown setting %q (there is no kumoi agent --%s; see kumoi agent --help)", setting, flag)
			return
		}
		if prev, dup := setBy[flag]; dup {
			fail(attr.SrcRange, "%s sets --%s again (%s set it already)", setting, flag, prev)
			return
		}
		setBy[flag] = setting
		v, diags := attr.Expr.Value(ctx)
		if diags.HasErrors() {
			fail(attr.SrcRange, "%s: %s", setting, diags[0].Detail)
			return
		}
		vals, err := flagValues(f, v)
		if err != nil {
			fail(attr.SrcRange, "%s: %v", setting, err)
			return
		}
		if c.IsSet(flag) {
			return // the command line or the environment wins
		}
		for _, s := range vals {
			if err := c.Set(flag, s); err != nil {
				fail(attr.SrcRange, "%s: %v", setting, err)
				return
			}
		}
	}
	for _, attr := range sortedAttrs(body.Attributes) {
		apply(attr.Name, strings.ReplaceAll(attr.Name, "_", "-"), attr)
	}
	for _, b := range body.Blocks {
		switch {
		case len(b.Labels) > 0:
			fail(b.TypeRange, "block %s takes no labels (write %s { … })", b.Type, b.Type)
			continue
		case len(b.Body.Blocks) > 0:
			fail(b.Body.Blocks[0].TypeRange, "block %s inside block %s: blocks do not nest", b.Body.Blocks[0].Type, b.Type)
			continue
		case !hasFlagPrefix(flags, strings.ReplaceAll(b.Type, "_", "-")):
			fail(b.TypeRange, "unknown block %q (no kumoi agent flag starts with --%s-)", b.Type, strings.ReplaceAll(b.Type, "_", "-"))
			continue
		}
		prefix := strings.ReplaceAll(b.Type, "_", "-")
		for _, attr := range sortedAttrs(b.Body.Attributes) {
			flag := prefix + "-" + strings.ReplaceAll(attr.Name, "_", "-")
			if attr.Name == "enabled" {
				flag = prefix
			}
			apply(b.Type+"."+attr.Name, flag, attr)
		}
	}
	if len(errs) > 0 {
		return usagef("%v", errors.Join(errs...))
	}
	return nil
}

func sortedAttrs(m hclsyntax.Attributes) []*hclsyntax.Attribute {
	out := make([]*hclsyntax.Attribute, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *hclsyntax.Attribute) int { return a.SrcRange.Start.Byte - b.SrcRange.Start.Byte })
	return out
}

func hasFlagPrefix(flags map[string]cli.Flag, prefix string) bool {
	for name := range flags {
		if name == prefix || strings.HasPrefix(name, prefix+"-") {
			return true
		}
	}
	return false
}

// flagValues turns an HCL value into the strings the flag's Set takes
// (one per element for a list flag), checking its type.
func flagValues(f cli.Flag, v cty.Value) ([]string, error) {
	if v.IsNull() {
		return nil, errors.New("is null; leave the setting out instead")
	}
	if !v.IsWhollyKnown() {
		return nil, errors.New("has no known value")
	}
	switch f.(type) {
	case *cli.StringSliceFlag:
		if v.Type() == cty.String {
			return []string{v.AsString()}, nil
		}
		if !v.Type().IsListType() && !v.Type().IsTupleType() {
			return nil, fmt.Errorf("want a list of strings, such as [\"a\", \"b\"], not %s", v.Type().FriendlyName())
		}
		var out []string
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.Type() != cty.String || e.IsNull() {
				return nil, fmt.Errorf("want a list of strings, but an element is %s", e.Type().FriendlyName())
			}
			out = append(out, e.AsString())
		}
		return out, nil
	case *cli.BoolFlag:
		if v.Type() != cty.Bool {
			return nil, fmt.Errorf("want true or false, not %s", v.Type().FriendlyName())
		}
		return []string{strconv.FormatBool(v.True())}, nil
	case *cli.IntFlag:
		if v.Type() != cty.Number {
			return nil, fmt.Errorf("want a whole number, not %s", v.Type().FriendlyName())
		}
		bf := v.AsBigFloat()
		i, acc := bf.Int64()
		if acc != big.Exact || i < -1<<31 || i > 1<<31-1 {
			return nil, fmt.Errorf("want a whole number, not %s", bf.Text('g', 10))
		}
		return []string{strconv.FormatInt(i, 10)}, nil
	case *cli.DurationFlag:
		if v.Type() != cty.String {
			return nil, fmt.Errorf("want a duration in quotes, such as \"250ms\" or \"3s\", not %s", v.Type().FriendlyName())
		}
		if _, err := time.ParseDuration(v.AsString()); err != nil {
			return nil, fmt.Errorf("want a duration such as \"250ms\" or \"3s\", not %q", v.AsString())
		}
		return []string{v.AsString()}, nil
	case *cli.StringFlag:
		if v.Type() != cty.String {
			return nil, fmt.Errorf("want a string in quotes, not %s", v.Type().FriendlyName())
		}
		return []string{v.AsString()}, nil
	}
	return nil, fmt.Errorf("cannot be set in a file (%T)", f)
}

func diagsText(diags hcl.Diagnostics) string {
	var lines []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			lines = append(lines, fmt.Sprintf("%s:%d: %s", d.Subject.Filename, d.Subject.Start.Line, msg))
		} else {
			lines = append(lines, msg)
		}
	}
	return strings.Join(lines, "\n")
}
