package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/kumoi/kumoi/resource"
)

// outputFormat returns the validated --output value.
func outputFormat(c *cli.Context) string { return c.String(flagOutput) }

// printData writes v as JSON or YAML (the YAML form is converted from the
// JSON form, so field names are the same). It returns false for the table
// format, which the caller renders itself.
func printData(c *cli.Context, v any) (bool, error) {
	w := c.App.Writer
	if t := c.String(flagTemplate); t != "" {
		return true, printTemplate(w, t, v)
	}
	switch outputFormat(c) {
	case formatJSON:
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return true, fmt.Errorf("encode output: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return true, err
	case formatYAML:
		data, err := json.Marshal(v)
		if err != nil {
			return true, fmt.Errorf("encode output: %w", err)
		}
		y, err := yaml.JSONToYAML(data)
		if err != nil {
			return true, fmt.Errorf("encode output: %w", err)
		}
		_, err = w.Write(y)
		return true, err
	}
	return false, nil
}

// now is the clock that ages are computed against (tests set it).
var now = time.Now

// table renders aligned columns. Every cell is non-empty ("-" stands for
// nothing) and has no white space, so that awk '{print $2}' works. A table
// made with freeText may end in one free-text column (a reason) that keeps
// its spaces: it is the last one, so the others still split the same way.
type table struct {
	tw       *tabwriter.Writer
	freeLast bool
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)}
	t.row(headers...)
	return t
}

// newFreeTextTable is newTable whose last column is free text.
func newFreeTextTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 3, ' ', 0), freeLast: true}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if t.freeLast && i == len(cells)-1 {
			cells[i] = textCell(c)
			continue
		}
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

func cell(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return '_'
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s
}

// textCell is a free-text cell: one line, single spaces, "-" when empty.
func textCell(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}

// shorten cuts s to at most n runes, ending in "…" when cut.
func shorten(s string, n int) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) <= n {
		return string(r)
	}
	return strings.TrimRight(string(r[:n-1]), " ,;:") + "…"
}

// ageCell says how long ago t was, in its largest unit: 45s, 12m, 5h, 3d
// ("-" for an unknown time).
func ageCell(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now().Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func uintCell(n uint64) string { return strconv.FormatUint(n, 10) }

func boolCell(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// reasonWidth is how much of a reason a list shows; get shows all of it.
const reasonWidth = 48

// printObjects renders objects of one kind: a JSON/YAML array (never null),
// or a table.
func printObjects(c *cli.Context, kind resource.Kind, objs []*resource.Object) error {
	if objs == nil {
		objs = []*resource.Object{}
	}
	if done, err := printData(c, objs); done {
		return err
	}
	return objectTable(c.App.Writer, kind, objs, reasonWidth)
}

// printObject renders one object: the object itself in JSON/YAML, or a
// one-row table.
func printObject(c *cli.Context, o *resource.Object) error {
	if done, err := printData(c, o); done {
		return err
	}
	return objectTable(c.App.Writer, o.Kind, []*resource.Object{o}, 0)
}

// objectTable renders objects as a table; reasons are cut to width runes
// (0: not cut).
func objectTable(w io.Writer, kind resource.Kind, objs []*resource.Object, width int) error {
	switch kind {
	case resource.KindVM:
		return vmTable(w, objs, width)
	case resource.KindHost:
		return hostTable(w, objs)
	case resource.KindPolicy:
		return policyTable(w, objs, width)
	case resource.KindNetwork:
		return networkTable(w, objs)
	case resource.KindImage:
		return imageTable(w, objs)
	case resource.KindVolume:
		return volumeTable(w, objs, width)
	case resource.KindProject:
		return projectTable(w, objs)
	}
	t := newTable(w, "NAME", "ID", "INDEX")
	for _, o := range objs {
		t.row(o.Name, o.ID, uintCell(o.ModifyIndex))
	}
	return t.flush()
}

// vmTable: NAME CPUS MEMORY POWER PHASE HOST INDEX REASON. POWER is what
// the user asked for, PHASE what the cluster observed; INDEX is the
// modify_index that --cas takes; REASON (free text, last) says why the VM
// is in its phase, when the cluster said. A single VM (vm get, width 0)
// that Kumoi restarted after crashes also shows RESTARTS, before REASON.
func vmTable(w io.Writer, objs []*resource.Object, width int) error {
	restarts := false
	for _, o := range objs {
		if _, st := resource.VMStateOf(o); width == 0 && st.Restarts > 0 {
			restarts = true
		}
	}
	head := []string{"NAME", "CPUS", "MEMORY", "POWER", "PHASE", "HOST", "INDEX", "REASON"}
	if restarts {
		head = slices.Insert(head, 7, "RESTARTS")
	}
	t := newFreeTextTable(w, head...)
	for _, o := range objs {
		spec, st := resource.VMStateOf(o)
		reason := st.Reason
		if width > 0 {
			reason = shorten(reason, width)
		}
		row := []string{o.Name, strconv.Itoa(spec.CPUs), resource.FormatMiB(spec.MemoryMiB),
			spec.Power, st.Phase, st.Host, uintCell(o.ModifyIndex), reason}
		if restarts {
			row = slices.Insert(row, 7, strconv.FormatUint(st.Restarts, 10))
		}
		t.row(row...)
	}
	return t.flush()
}

// hostTable: NAME STATE SCHEDULABLE CPUS MEMORY DRIVER ADDRESS SINCE. CPUS
// and MEMORY are allocated/capacity (capacity after overcommit); SINCE is
// how long the host has been in its state.
func hostTable(w io.Writer, objs []*resource.Object) error {
	t := newTable(w, "NAME", "STATE", "SCHEDULABLE", "CPUS", "MEMORY", "DRIVER", "ADDRESS", "SINCE")
	for _, o := range objs {
		spec, st := resource.HostStateOf(o)
		capa := resource.Schedulable(spec, st)
		t.row(o.Name, st.State, boolCell(!spec.Unschedulable),
			fmt.Sprintf("%d/%d", st.Allocated.CPUs, capa.CPUs),
			resource.FormatMiB(st.Allocated.MemoryMiB)+"/"+resource.FormatMiB(capa.MemoryMiB),
			st.Driver, st.Address, ageCell(st.Since))
	}
	return t.flush()
}

// templateFuncs are the functions of -t templates.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join": func(sep string, v []any) string {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, sep)
	},
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

func parseTemplate(text string) (*template.Template, error) {
	return template.New("-t").Funcs(templateFuncs).Option("missingkey=zero").Parse(text)
}

// printTemplate renders v through a -t template. The template sees v as
// -o json shows it (objects are maps with the JSON field names: .name,
// .spec.cpus, .status.phase), so that one template works for every
// command.
func printTemplate(w io.Writer, text string, v any) error {
	t, err := parseTemplate(text)
	if err != nil {
		return usagef("invalid -t template: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	var data any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return fmt.Errorf("-t template: %v", err)
	}
	_, err = w.Write(out.Bytes())
	return err
}
