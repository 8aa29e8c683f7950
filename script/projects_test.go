package script

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/resource"
)

func TestProjectsInScripts(t *testing.T) {
	s := apitest.New(t)
	cl, err := client.New(client.Config{Addrs: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cl.Projects().Create(ctx, "p1", resource.ProjectSpec{MaxVMs: 2, MaxCPUs: 4, Strategy: resource.StrategySpread}, map[string]string{"team": "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Projects().Create(ctx, "p2", resource.ProjectSpec{}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := runScript(t, Env{Client: cl, Timeout: time.Minute}, `
p = project("p1")
print(type(p), p.name, p.labels["team"], p.strategy, p.limits.max_vms, p.limits.max_cpus, p.limits.max_memory_mib, p.spec.strategy)
print(p.usage.vms, p.usage.cpus, str(p))
a = create_vm("a", cpus=3, memory="1GiB", project="p1")
print(a.name)
p.refresh()
print(p.usage.vms, p.usage.cpus, p.usage.memory_mib, p.status.usage.cpus)
print([x.name for x in projects()], [x.name for x in projects("team=web")])
print(project("p2").strategy)
project("p2").delete()
print([x.name for x in projects()])
create_vm("b", cpus=2, project="p1")
`)
	if err == nil || !strings.Contains(err.Error(), "project p1: max_cpus 4 exceeded: 3 in use, 2 asked") {
		t.Fatalf("over quota: %v\n%s", err, out)
	}
	want := `project p1 web spread 2 4 0 spread
0 0 project("p1", vms=0/2, cpus=0/4)
a
1 3 1024 3
["p1", "p2"] ["p1"]
None
["p1"]
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}
