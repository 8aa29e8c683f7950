package e2e

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// readBundle reads a debug bundle: file name -> content.
func readBundle(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = string(b)
	}
}

// TestOperatorDebug collects a debug bundle of a 3-controller cluster
// given one controller's address (ACLs on): every controller is found
// through gossip and gives its status, configuration (no secret in the
// whole archive), logs, metrics, goroutines and heap; then, with one
// controller killed and named on --addr, the bundle still comes, and its
// manifest says what is missing.
func TestOperatorDebug(t *testing.T) {
	c := newCluster(t, testcluster.Options{Controllers: 3})
	c.WaitLeader(leaderTimeout)
	run := func(addrs []string, out string) string {
		t.Helper()
		cmd := exec.Command(c.Bin(), "operator", "debug", "--output", out)
		cmd.Env = testcluster.CLIEnv(append(os.Environ(), "KUMOI_ADDR="+strings.Join(addrs, ",")))
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("operator debug: %v\n%s", err, b)
		}
		return string(b)
	}
	dir := t.TempDir()
	out := run([]string{c.URL(0)}, filepath.Join(dir, "a.tar.gz"))
	files := readBundle(t, filepath.Join(dir, "a.tar.gz"))
	for name, content := range files {
		if strings.Contains(content, testcluster.ManagementToken) {
			t.Errorf("%s holds the management token's secret", name)
		}
	}
	var m struct {
		Controllers []string          `json:"controllers"`
		Files       []string          `json:"files"`
		Errors      map[string]string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(files["manifest.json"]), &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, files["manifest.json"])
	}
	if len(m.Controllers) != 3 || len(m.Errors) != 0 {
		t.Errorf("manifest %+v (output %s)", m, out)
	}
	var cl resource.Cluster
	if err := json.Unmarshal([]byte(files["cluster.json"]), &cl); err != nil || len(cl.Servers) != 3 {
		t.Errorf("cluster.json: %v %+v", err, cl)
	}
	for i := range c.N() {
		id := c.ID(i)
		var st resource.Status
		if err := json.Unmarshal([]byte(files[id+"/status.json"]), &st); err != nil || st.NodeID != id {
			t.Errorf("%s/status.json: %v %+v", id, err, st)
		}
		var self resource.AgentSelf
		if err := json.Unmarshal([]byte(files[id+"/self.json"]), &self); err != nil {
			t.Errorf("%s/self.json: %v", id, err)
		} else if self.Config["node-id"] != id || self.Config["acl-initial-management"] != "<redacted>" || self.Config["controller"] != true {
			t.Errorf("%s/self.json config: %v", id, self.Config)
		}
		for name, want := range map[string]string{"logs.txt": "kumoi", "metrics.txt": "kumoi_fsm_apply_duration_seconds", "goroutines.txt": "goroutine "} {
			if !strings.Contains(files[id+"/"+name], want) {
				t.Errorf("%s/%s lacks %q (%d bytes)", id, name, want, len(files[id+"/"+name]))
			}
		}
		if len(files[id+"/heap.pprof"]) == 0 {
			t.Errorf("%s/heap.pprof is empty", id)
		}
	}

	c.Kill(2)
	run([]string{c.URL(0), c.URL(2)}, filepath.Join(dir, "b.tar.gz"))
	files = readBundle(t, filepath.Join(dir, "b.tar.gz"))
	if err := json.Unmarshal([]byte(files["manifest.json"]), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Errors) == 0 || files[c.ID(0)+"/status.json"] == "" {
		t.Errorf("with %s killed: manifest %+v", c.ID(2), m)
	}
	for name := range m.Errors {
		if !strings.Contains(name, c.IP(2)) {
			t.Errorf("missing %s, but only %s is down", name, c.ID(2))
		}
	}
}
