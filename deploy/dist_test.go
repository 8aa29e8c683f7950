package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// need finds a command (testcluster.Tool).
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	return testcluster.Tool(t, name, pkg)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildDeb runs make dist's script with the test's kumoi binary and
// returns the package's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	need(t, "dpkg-deb", "dpkg")
	bin := testcluster.Binary(t, "")
	cmd := exec.Command("bash", "../scripts/build-deb.sh", t.TempDir())
	cmd.Env = append(os.Environ(), "KUMOI_DEB_BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// TestDebianPackage builds the .deb of make dist and checks it as dpkg
// and systemd would see it: its control fields and scripts, every file
// where it belongs with its owner and mode, the configuration files as
// conffiles, units systemd-analyze accepts, and default configurations
// kumoi agent -validate accepts.
func TestDebianPackage(t *testing.T) {
	deb := buildDeb(t)
	if !regexp.MustCompile(`/kumoi_[0-9][^_]*_[a-z0-9]+\.deb$`).MatchString(deb) {
		t.Errorf("package file name %s", deb)
	}
	info := run(t, "dpkg-deb", "--info", deb)
	for _, want := range []string{"Package: kumoi", "Depends: libc6, passwd", "Recommends: libvirt0", "postinst", "prerm", "postrm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	contents := run(t, "dpkg-deb", "--contents", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/kumoi\n",
		"-rw-r--r-- root/root .* ./lib/systemd/system/kumoi-controller.service\n",
		"-rw-r--r-- root/root .* ./lib/systemd/system/kumoi-worker.service\n",
		"-rw-r--r-- root/root .* ./lib/systemd/system/kumoi-fence-guard.service\n",
		"-rw-r--r-- root/root .* ./etc/kumoi/controller.hcl\n",
		"-rw-r--r-- root/root .* ./etc/kumoi/worker.hcl\n",
		"./usr/share/bash-completion/completions/kumoi\n",
		"./usr/share/kumoi/prometheus/kumoi-alerts.yml\n",
		"./usr/share/kumoi/grafana/kumoi-dashboard.json\n",
		"./usr/share/doc/kumoi/copyright\n",
		"./usr/share/doc/kumoi/operations.md\n",
		"drwxr-xr-x root/root .* ./\n",
	} {
		if !regexp.MustCompile(want).MatchString(contents) {
			t.Errorf("the package lacks %q:\n%s", want, contents)
		}
	}
	if strings.Contains(contents, "kumoi.env") {
		t.Error("the package ships kumoi.env: its secret must be made on each machine (postinst)")
	}

	root := t.TempDir()
	run(t, "dpkg-deb", "--raw-extract", deb, root)
	if c, err := os.ReadFile(filepath.Join(root, "DEBIAN", "conffiles")); err != nil || string(c) != "/etc/kumoi/controller.hcl\n/etc/kumoi/worker.hcl\n" {
		t.Errorf("conffiles %q (%v)", c, err)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		run(t, "sh", "-n", filepath.Join(root, "DEBIAN", s))
	}

	// The units, as systemd reads them (ExecStart pointed at this binary).
	need(t, "systemd-analyze", "systemd")
	units := t.TempDir()
	kumoi := filepath.Join(root, "usr", "bin", "kumoi")
	for _, u := range []string{"kumoi-controller.service", "kumoi-worker.service", "kumoi-fence-guard.service"} {
		b, err := os.ReadFile(filepath.Join(root, "lib", "systemd", "system", u))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if u != "kumoi-fence-guard.service" && !strings.Contains(text, "Type=notify") {
			t.Errorf("%s is not Type=notify", u)
		}
		if err := os.WriteFile(filepath.Join(units, u), []byte(strings.ReplaceAll(text, "/usr/bin/kumoi", kumoi)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("systemd-analyze", "verify",
		filepath.Join(units, "kumoi-controller.service"), filepath.Join(units, "kumoi-worker.service"), filepath.Join(units, "kumoi-fence-guard.service")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The default configurations are valid as installed.
	for file, role := range map[string]string{"controller.hcl": "valid (controller)", "worker.hcl": "valid (worker)"} {
		out := run(t, kumoi, "agent", "-config", filepath.Join(root, "etc", "kumoi", file), "-validate")
		if !strings.Contains(out, role) {
			t.Errorf("%s: %s", file, out)
		}
	}
}
