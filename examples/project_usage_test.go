package examples_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/resource"
)

// TestProjectUsage runs project-usage.star against the real API and state
// machine (quotas are the state machine's).
func TestProjectUsage(t *testing.T) {
	s := apitest.New(t)
	c, err := client.New(client.Config{Addrs: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Projects().Create(ctx, "web", resource.ProjectSpec{MaxVMs: 2, MaxCPUs: 10}, map[string]string{"team": "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Projects().Create(ctx, "batch", resource.ProjectSpec{MaxCPUs: 10}, nil); err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		name, project string
		cpus          int
	}{{"a", "web", 1}, {"b", "web", 1}, {"c", "batch", 9}} {
		if _, err := c.VMs().Create(ctx, v.name, resource.VMSpec{CPUs: v.cpus, MemoryMiB: 64, Project: v.project}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.VMs().Create(ctx, "d", resource.VMSpec{CPUs: 1, MemoryMiB: 64, Project: "web"}, nil); !errors.Is(err, client.ErrQuotaExceeded) {
		t.Fatalf("third VM in web: %v, want ErrQuotaExceeded", err)
	}
	out := mustRunExample(t, c, "project-usage.star")
	for _, want := range []string{
		"PROJECT     VMS       CPUS      MEMORY_MIB      VOLUME_MIB      FLAG\n",
		"batch       1/-       9/10      64/-            0/-             NEAR\n",
		"web         2/2       2/10      128/-           0/-             FULL\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out := mustRunExample(t, c, "project-usage.star", "team=web"); strings.Contains(out, "batch") {
		t.Errorf("selector team=web:\n%s", out)
	}
	if _, err := runExample(t, c, "project-usage.star", "team=none"); err == nil || !strings.Contains(err.Error(), `no project matches "team=none"`) {
		t.Errorf("no match: %v", err)
	}
}
