package cli

import (
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
)

func TestVMCreatePlacement(t *testing.T) {
	s := testapi.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "all placement flags", args: []string{"vm", "create", "db-1", "--cpus", "1", "--memory", "1G",
			"--requirements", `host.labels.zone == "b" && host.free_memory_mib > 4096`, "--rank", "-host.allocated_cpus",
			"--strategy", "binpack", "--group", "db", "--affinity", "anti-affine", "--hard", "--project", "p1", "-o", "json"},
			stdout: []string{`"requirements": "host.labels.zone == \"b\" \u0026\u0026 host.free_memory_mib \u003e 4096"`, `"rank": "-host.allocated_cpus"`,
				`"strategy": "binpack"`, `"group": "db"`, `"rule": "anti-affine"`, `"hard": true`, `"project": "p1"`}},
		{name: "soft affinity", args: []string{"vm", "create", "web-1", "--cpus", "1", "--memory", "1G", "--group", "web", "--affinity", "affine", "-o", "json"},
			stdout: []string{`"affinity": {`, `"rule": "affine"`}},
		{name: "get shows them", args: []string{"vm", "get", "db-1"},
			stdout: []string{"project:      p1\n", `requirements: host.labels.zone == "b" && host.free_memory_mib > 4096` + "\n",
				"rank:         -host.allocated_cpus\n", "strategy:     binpack\n", "affinity:     hard anti-affine, group db\n"}},
		{name: "bad requirements", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--requirements", `host.labels.zone == "b" && hots.cpus > 1`}, code: 1,
			stderr: "line 1, column 28: unknown name hots"},
		{name: "rank not a number", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--rank", `host.name`}, code: 1,
			stderr: "must be a numeric expression"},
		{name: "bad strategy", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--strategy", "pack"}, code: 2,
			stderr: `kumoi: invalid --strategy "pack": use binpack or spread`},
		{name: "affinity without group", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--affinity", "affine"}, code: 2,
			stderr: "--affinity and --hard need --group NAME"},
		{name: "group without rule", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--group", "g"}, code: 2,
			stderr: "--group g needs --affinity affine or --affinity anti-affine"},
		{name: "bad rule", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--group", "g", "--affinity", "near"}, code: 2,
			stderr: `invalid --affinity "near"`},
	})
	if o := s.Object(resource.KindVM, "x"); o != nil {
		t.Errorf("x was created: %s", o.Spec)
	}
	if o := s.Object(resource.KindVM, "web-1"); o == nil || strings.Contains(string(o.Spec), `"hard"`) {
		t.Errorf("web-1: %v", o)
	}
}
