package cli

import (
	"testing"

	"github.com/kumoi/kumoi/cluster/api/apitest"
)

func TestProjectCommands(t *testing.T) {
	s := apitest.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "usage without projects", args: []string{"project", "usage"},
			exact: "PROJECT   VMS   CPUS   MEMORY   VOLUMES\ndefault   0/-   0/-    0MiB/-   0MiB/-\n"},
		{name: "create", args: []string{"project", "create", "p1", "--max-vms", "10", "--max-cpus", "20", "--max-memory", "64GiB", "--max-volume", "1TiB", "--strategy", "spread"},
			stdout: []string{"NAME   VMS    CPUS   MEMORY       VOLUMES     STRATEGY   INDEX", "p1     0/10   0/20   0MiB/64GiB   0MiB/1TiB   spread"}},
		{name: "create json", args: []string{"project", "create", "p2", "--max-cpus", "2", "-o", "json"}, stdout: []string{`"max_cpus": 2`, `"usage": {`}},
		{name: "bad strategy", args: []string{"project", "create", "p9", "--strategy", "random"}, code: 2, stderr: `invalid --strategy "random"`},
		{name: "bad max-vms", args: []string{"project", "create", "p9", "--max-vms", "-1"}, code: 2, stderr: `invalid --max-vms "-1"`},
		{name: "bad max-memory", args: []string{"project", "create", "p9", "--max-memory", "lots"}, code: 2, stderr: "invalid --max-memory"},
		{name: "volume in project", args: []string{"volume", "create", "v1", "--size", "1GiB", "--project", "p1", "-o", "json"}, stdout: []string{`"project": "p1"`}},
		{name: "volume in unknown project", args: []string{"volume", "create", "v2", "--size", "1GiB", "--project", "nope"}, code: 1, stderr: "kumoi: spec.project: no project nope: create it first"},
		{name: "volume over quota", args: []string{"volume", "create", "v3", "--size", "2GiB", "--project", "p2"}},
		{name: "update", args: []string{"project", "update", "p2", "--max-volume", "1GiB"}, stdout: []string{"p2     0/-   0/2    0MiB/-   2GiB/1GiB"}},
		{name: "over quota", args: []string{"volume", "create", "v4", "--size", "1GiB", "--project", "p2"}, code: 1, stderr: "project p2: max_volume_mib 1024 exceeded: 2048 in use, 1024 asked"},
		{name: "get", args: []string{"project", "get", "p1"}, stdout: []string{"p1     0/10   0/20   0MiB/64GiB   1GiB/1TiB   spread"}},
		{name: "list", args: []string{"project", "list"}, stdout: []string{"p1", "p2"}},
		{name: "usage", args: []string{"project", "usage"}, stdout: []string{"default   0/-    0/-    0MiB/-", "p1        0/10   0/20   0MiB/64GiB   1GiB/1TiB", "p2        0/-    0/2"}},
		{name: "usage one", args: []string{"project", "usage", "p2", "-o", "json"}, stdout: []string{`"project": "p2"`, `"volume_mib": 2048`}},
		{name: "usage unknown", args: []string{"project", "usage", "nope"}, code: 1, stderr: `project "nope" not found`},
		{name: "delete in use", args: []string{"project", "delete", "p1"}, code: 1, stderr: "project p1 is used by volume v1"},
		{name: "delete volume", args: []string{"volume", "delete", "v1"}},
		{name: "delete", args: []string{"project", "delete", "p1"}, exact: "project \"p1\" deleted\n"},
	})
}
