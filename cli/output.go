package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
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

// table renders aligned columns. Every cell is non-empty ("-" stands for
// nothing) and has no white space, so that awk '{print $2}' works.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
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

func uintCell(n uint64) string { return strconv.FormatUint(n, 10) }

func boolCell(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// printObjects renders objects of one kind: a JSON/YAML array (never null),
// or a table.
func printObjects(c *cli.Context, kind resource.Kind, objs []*resource.Object) error {
	if objs == nil {
		objs = []*resource.Object{}
	}
	if done, err := printData(c, objs); done {
		return err
	}
	return objectTable(c.App.Writer, kind, objs)
}

// printObject renders one object: the object itself in JSON/YAML, or a
// one-row table.
func printObject(c *cli.Context, o *resource.Object) error {
	if done, err := printData(c, o); done {
		return err
	}
	return objectTable(c.App.Writer, o.Kind, []*resource.Object{o})
}

func objectTable(w io.Writer, kind resource.Kind, objs []*resource.Object) error {
	switch kind {
	case resource.KindVM:
		return vmTable(w, objs)
	case resource.KindHost:
		return hostTable(w, objs)
	}
	t := newTable(w, "NAME", "ID", "INDEX")
	for _, o := range objs {
		t.row(o.Name, o.ID, uintCell(o.ModifyIndex))
	}
	return t.flush()
}

func vmTable(w io.Writer, objs []*resource.Object) error {
	t := newTable(w, "NAME", "CPUS", "MEMORY", "POWER", "PHASE", "HOST", "INDEX")
	for _, o := range objs {
		spec, _ := resource.DecodeSpec[resource.VMSpec](o)
		st, _ := resource.DecodeStatus[resource.VMStatus](o)
		if spec == nil {
			spec = &resource.VMSpec{}
		}
		if st == nil {
			st = &resource.VMStatus{}
		}
		t.row(o.Name, strconv.Itoa(spec.CPUs), resource.FormatMiB(spec.MemoryMiB),
			spec.Power, st.Phase, st.Host, uintCell(o.ModifyIndex))
	}
	return t.flush()
}

func hostTable(w io.Writer, objs []*resource.Object) error {
	t := newTable(w, "NAME", "STATE", "ADDRESS", "CPUS", "MEMORY", "ALLOCATED", "SCHEDULABLE")
	for _, o := range objs {
		spec, _ := resource.DecodeSpec[resource.HostSpec](o)
		st, _ := resource.DecodeStatus[resource.HostStatus](o)
		if spec == nil {
			spec = &resource.HostSpec{}
		}
		if st == nil {
			st = &resource.HostStatus{}
		}
		alloc := fmt.Sprintf("%dcpu,%s", st.Allocated.CPUs, resource.FormatMiB(st.Allocated.MemoryMiB))
		t.row(o.Name, st.State, st.Address, strconv.Itoa(st.Capacity.CPUs),
			resource.FormatMiB(st.Capacity.MemoryMiB), alloc, boolCell(!spec.Unschedulable))
	}
	return t.flush()
}
