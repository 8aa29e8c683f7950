package cluster

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/kumoi/kumoi"

// forbidden lists, for each role package, the packages it must not import,
// directly or through any of the module's own packages it imports.
var forbidden = map[string][]string{
	"cluster/membership": {"cluster/agent", "cluster/controller", "cluster/api", "cluster/worker", "fsm", "github.com/hashicorp/raft"},
	"cluster/worker":     {"cluster/agent", "cluster/controller", "cluster/api", "fsm", "scheduler", "github.com/hashicorp/raft"},
	"cluster/api":        {"cluster/agent", "cluster/controller", "cluster/worker"},
	"cluster/controller": {"cluster/agent", "cluster/api", "cluster/worker", "cluster/fenceguard"},
	"cluster/fenceguard": {"cluster/agent", "cluster/controller", "cluster/api", "cluster/worker", "cluster/membership", "fsm", "scheduler", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist"},
}

// forbiddenDirect lists imports a role package must not make itself (it
// may reach them through a lower layer: fsm implements raft.FSM).
var forbiddenDirect = map[string][]string{
	"cluster/api": {"github.com/hashicorp/raft", "github.com/hashicorp/raft-boltdb/v2"},
}

// lower are the packages below cluster/: none may import any of cluster/.
var lower = []string{"resource", "fsm", "scheduler", "client", "skel", "script", "hypervisor", "hypervisor/sim", "hypervisor/libvirt"}

// roles must exist, each with a doc.go.
var roles = []string{"cluster/agent", "cluster/controller", "cluster/api", "cluster/worker", "cluster/membership", "cluster/fenceguard"}

// repoRoot is the module's root: go test runs in this package's folder.
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// deps returns every import of pkg (a path below the module) and of the
// module's packages it reaches, non-test files only, with the build tags
// the Makefile uses.
func deps(t *testing.T, root, pkg string) map[string][]string {
	t.Helper()
	ctx := build.Default
	ctx.BuildTags = append(ctx.BuildTags, "libvirt_dlopen")
	via := map[string][]string{} // import path → chain that reached it
	var walk func(rel string, chain []string)
	walk = func(rel string, chain []string) {
		p, err := ctx.ImportDir(filepath.Join(root, rel), 0)
		if err != nil {
			t.Fatalf("read package %s: %v", rel, err)
		}
		for _, imp := range p.Imports {
			name := strings.TrimPrefix(imp, module+"/")
			if _, seen := via[name]; seen {
				continue
			}
			via[name] = append(slices.Clone(chain), name)
			if strings.HasPrefix(imp, module+"/") {
				walk(name, via[name])
			}
		}
	}
	walk(pkg, []string{pkg})
	return via
}

// TestImportRules keeps the role packages' import rules (doc.go) true.
func TestImportRules(t *testing.T) {
	root := repoRoot(t)
	for _, r := range roles {
		if _, err := build.Default.ImportDir(filepath.Join(root, r), 0); err != nil {
			t.Errorf("role package %s: %v", r, err)
		}
		if !fileExists(filepath.Join(root, r, "doc.go")) {
			t.Errorf("role package %s has no doc.go saying what it owns and must not import", r)
		}
	}
	for pkg, bad := range forbidden {
		via := deps(t, root, pkg)
		for _, b := range bad {
			if chain, ok := via[b]; ok {
				t.Errorf("%s must not import %s, but does: %s", pkg, b, strings.Join(chain, " → "))
			}
		}
	}
	for pkg, bad := range forbiddenDirect {
		via := deps(t, root, pkg)
		for _, b := range bad {
			if chain, ok := via[b]; ok && len(chain) == 2 {
				t.Errorf("%s must not import %s itself (map its errors in the controller)", pkg, b)
			}
		}
	}
	for _, pkg := range lower {
		via := deps(t, root, pkg)
		var bad []string
		for name, chain := range via {
			if name == "cluster" || strings.HasPrefix(name, "cluster/") {
				bad = append(bad, strings.Join(chain, " → "))
			}
		}
		sort.Strings(bad)
		for _, chain := range bad {
			t.Errorf("%s is below cluster/ and must not import it: %s", pkg, chain)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
