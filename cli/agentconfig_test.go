package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/tlsutil"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.hcl")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAgentConfigFile: every kind of setting reaches the configuration,
// in blocks too; the command line and the environment override the file.
func TestAgentConfigFile(t *testing.T) {
	t.Setenv("KUMOI_TEST_SECRET", "from-the-environment-0123456789")
	p := writeConfig(t, `
controller       = true
node_id          = "c1"
data_dir         = "/var/lib/kumoi"
bind             = "10.0.0.1"
bootstrap_expect = 3
join             = ["10.0.0.2:7402", "10.0.0.3:7402"]
heartbeat_timeout = "300ms"
placement_strategy = "binpack"

acl {
  enabled            = true
  initial_management = env("KUMOI_TEST_SECRET")
}
fence {
  command = "/usr/local/bin/fence"
  timeout = "30s"
}
`)
	cfg, stderr, code := agentConfig(t, "--config", p)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if cfg.NodeID != "c1" || cfg.DataDir != "/var/lib/kumoi" || cfg.BindIP != "10.0.0.1" || cfg.BootstrapExpect != 3 ||
		!slices.Equal(cfg.Join, []string{"10.0.0.2:7402", "10.0.0.3:7402"}) || cfg.HeartbeatTimeout != 300*time.Millisecond ||
		cfg.PlacementStrategy != "binpack" || !cfg.ACL || cfg.ACLInitialManagement != "from-the-environment-0123456789" ||
		cfg.FenceCommand != "/usr/local/bin/fence" || cfg.FenceTimeout != 30*time.Second {
		t.Errorf("config from the file: %+v", cfg)
	}

	// Flags and the environment win over the file.
	t.Setenv("KUMOI_ACL_INITIAL_MANAGEMENT", "the-variable-wins-0123456789")
	cfg, stderr, code = agentConfig(t, "--config", p, "--node-id", "c9", "--join", "10.9.9.9:7402", "--acl=false")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if cfg.NodeID != "c9" || !slices.Equal(cfg.Join, []string{"10.9.9.9:7402"}) || cfg.ACL || cfg.ACLInitialManagement != "the-variable-wins-0123456789" || cfg.DataDir != "/var/lib/kumoi" {
		t.Errorf("overrides: %+v", cfg)
	}
}

// TestAgentConfigFileRefused: every mistake is refused with exit 2, its
// file and line, and what to write instead; all of a file's mistakes at
// once.
func TestAgentConfigFileRefused(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "controller = true\nnod_id = \"c1\"\n", []string{"agent.hcl:2: unknown setting \"nod_id\" (there is no kumoi agent --nod-id"}},
		{"string for a number", "bootstrap_expect = \"three\"\n", []string{"agent.hcl:1: bootstrap_expect: want a whole number, not string"}},
		{"fraction", "api_port = 7400.5\n", []string{"agent.hcl:1: api_port: want a whole number"}},
		{"bad duration", "\n\nheartbeat_timeout = \"fast\"\n", []string{"agent.hcl:3: heartbeat_timeout: want a duration such as \"250ms\""}},
		{"number for a duration", "host_down_grace = 3\n", []string{"agent.hcl:1: host_down_grace: want a duration in quotes"}},
		{"bool as string", "controller = \"yes\"\n", []string{"agent.hcl:1: controller: want true or false"}},
		{"list of numbers", "join = [1, 2]\n", []string{"agent.hcl:1: join: want a list of strings"}},
		{"unknown block", "tsl {\n  ca = \"x\"\n}\n", []string{"agent.hcl:1: unknown block \"tsl\""}},
		{"unknown in block", "tls {\n  certificate = \"x\"\n}\n", []string{"agent.hcl:2: unknown setting \"tls.certificate\" (there is no kumoi agent --tls-certificate"}},
		{"labelled block", "tls \"main\" {\n}\n", []string{"agent.hcl:1: block tls takes no labels"}},
		{"set twice", "tls_ca = \"a\"\ntls {\n  ca = \"b\"\n}\n", []string{"agent.hcl:3: tls.ca sets --tls-ca again (tls_ca set it already)"}},
		{"syntax", "controller = \n", []string{"agent.hcl:1:"}},
		{"variable", "node_id = hostname\n", []string{"agent.hcl:1: node_id:"}},
		{"the file itself", "config = \"other.hcl\"\n", []string{"unknown setting \"config\""}},
		{"two mistakes", "nod_id = \"c1\"\ncontroller = 1\n", []string{"agent.hcl:1: unknown setting", "agent.hcl:2: controller: want true or false"}},
	} {
		p := writeConfig(t, tc.text)
		_, stderr, code := agentConfig(t, "--config", p)
		if code != exitUsage {
			t.Errorf("%s: exit %d, want %d: %s", tc.name, code, exitUsage, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, stderr, w)
			}
		}
	}
	if _, stderr, code := agentConfig(t, "--config", filepath.Join(t.TempDir(), "missing.hcl")); code != exitUsage || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: exit %d %q", code, stderr)
	}
}

// TestAgentValidate runs kumoi agent -validate for real: the example files
// are valid once their TLS files exist (given as flags, which override
// the file), a bad file or a bad flag exits 2, and nothing starts.
func TestAgentValidate(t *testing.T) {
	dir := t.TempDir()
	ca, crt := filepath.Join(dir, "ca"), filepath.Join(dir, "node")
	if err := tlsutil.CreateCA(ca); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.CreateCert(tlsutil.RoleServer, ca, "c1", nil, nil, crt); err != nil {
		t.Fatal(err)
	}
	tlsFlags := []string{"--tls-ca", ca + ".pem", "--tls-cert", crt + ".pem", "--tls-key", crt + "-key.pem"}
	for _, f := range []string{"controller.hcl", "worker.hcl"} {
		path := filepath.Join("..", "examples", "config", f)
		out, stderr, code := runCLI(t, append([]string{"agent", "-config", path, "-validate"}, tlsFlags...)...)
		if code != exitOK || !strings.Contains(out, path+": valid (") {
			t.Errorf("%s -validate: exit %d, out %q, stderr %q", f, code, out, stderr)
		}
		// Without the TLS files the file names, -validate says so.
		if _, stderr, code := runCLI(t, "agent", "-config", path, "-validate"); code != exitUsage || !strings.Contains(stderr, "--tls-ca") {
			t.Errorf("%s -validate without its TLS files: exit %d %q", f, code, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "-validate"}, "say what to run"},
		{[]string{"agent", "--controller", "--acl-initial-management", "short", "-validate"}, "--acl-initial-management"},
		{[]string{"agent", "--worker", "--hypervisor", "xen", "-validate"}, "use sim or libvirt"},
		{[]string{"agent", "--worker", "--fence-after", "9s", "-validate"}, "must be shorter than --host-down-grace"},
		{[]string{"agent", "--controller", "--encrypt", "nope", "-validate"}, "encrypt"},
		{[]string{"agent", "-config", writeConfig(t, "worker = true\ncpus = \"8\"\n"), "-validate"}, "agent.hcl:2: cpus: want a whole number"},
	} {
		if _, stderr, code := runCLI(t, tc.args...); code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d %q, want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
	if out, stderr, code := runCLI(t, "agent", "--controller", "--worker", "--node-id", "n1", "--data-dir", dir, "-validate"); code != exitOK || !strings.Contains(out, "valid (controller and worker)") {
		t.Errorf("flags only: exit %d %q %q", code, out, stderr)
	}
}
