package jepsen

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestKumoiImports holds the package to what doc.go says it depends on: of
// Kumoi's packages, only these (go list -deps).
func TestKumoiImports(t *testing.T) {
	allowed := []string{
		"github.com/kumoi/kumoi/client",
		"github.com/kumoi/kumoi/hypervisor",
		"github.com/kumoi/kumoi/internal/frames",
		"github.com/kumoi/kumoi/internal/libvirtd",
		"github.com/kumoi/kumoi/internal/testcluster",
		"github.com/kumoi/kumoi/internal/tlsutil",
		"github.com/kumoi/kumoi/jepsen",
		"github.com/kumoi/kumoi/resource",
	}
	// go test runs under the go command: it is on PATH (the Makefile
	// puts GOROOT/bin there).
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("no go command to list the dependencies: %v", err)
	}
	out, err := exec.Command("go", "list", "-tags", "libvirt_dlopen", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/kumoi/kumoi/") && !slices.Contains(allowed, p) {
			t.Errorf("jepsen depends on %s; doc.go allows only %v", p, allowed)
		}
	}
}
