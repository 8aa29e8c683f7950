package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestPackageInstall is make test-dist (opt-in: KUMOI_TEST_DIST=1, root):
// it installs the .deb of make dist with dpkg into a throwaway Debian 12
// root (debootstrap --variant=minbase, cached under
// KUMOI_DIST_CACHE, default /var/cache/kumoi-test-dist), checks what
// postinst made (the kumoi user, the data directories and their owners,
// the secret), then starts kumoi-controller.service and
// kumoi-worker.service as systemd would — their User, EnvironmentFile,
// ExecStartPre and ExecStart as the unit files say, NOTIFY_SOCKET set,
// in a network namespace of the test's own — and waits for each one's
// READY=1. The cloud then takes a VM through the packaged CLI (the worker
// switched to the sim hypervisor in its conffile, as an operator edits
// it: the root has no libvirt). SIGTERM stops both (STOPPING=1, exit 0),
// and dpkg --purge removes the package and the secret.
func TestPackageInstall(t *testing.T) {
	if os.Getenv("KUMOI_TEST_DIST") != "1" {
		t.Skip("opt-in: make test-dist (KUMOI_TEST_DIST=1, as root)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("make test-dist needs root: debootstrap, chroot, mounts, a network namespace")
	}
	deb := buildDeb(t)
	root := debianRoot(t)
	sh := func(args ...string) string {
		t.Helper()
		return run(t, args[0], args[1:]...)
	}
	for _, m := range []string{"proc", "dev"} {
		sh("mount", "--bind", "/"+m, filepath.Join(root, m))
		t.Cleanup(func() { _ = exec.Command("umount", "-l", filepath.Join(root, m)).Run() })
	}
	sh("cp", deb, filepath.Join(root, "tmp", "kumoi.deb"))
	t.Logf("dpkg -i: %s", sh("chroot", root, "dpkg", "-i", "/tmp/kumoi.deb"))

	// What postinst made.
	passwd, _ := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if !regexp.MustCompile(`(?m)^kumoi:x:\d+:\d+:.*:/var/lib/kumoi:/usr/sbin/nologin$`).Match(passwd) {
		t.Errorf("no kumoi system user:\n%s", passwd)
	}
	for path, want := range map[string]string{
		"/var/lib/kumoi":        "kumoi kumoi 750",
		"/var/lib/kumoi-worker": "root root 700",
		"/etc/kumoi/kumoi.env":  "root root 600",
	} {
		if got := strings.TrimSpace(sh("chroot", root, "stat", "-c", "%U %G %a", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	env := readEnvFile(t, filepath.Join(root, "etc", "kumoi", "kumoi.env"))
	secret := env["KUMOI_ACL_INITIAL_MANAGEMENT"]
	if len(secret) != 36 || env["KUMOI_TOKEN"] != secret {
		t.Fatalf("kumoi.env: %v", env)
	}

	// The worker on the sim hypervisor, as an operator would edit it.
	wcfg := filepath.Join(root, "etc", "kumoi", "worker.hcl")
	b, err := os.ReadFile(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), `hypervisor  = "libvirt"`, `hypervisor  = "sim"`, 1)
	text = strings.Replace(text, `fence_guard = "external"`, `fence_guard = "off"`, 1)
	text += "cpus   = 4\nmemory = \"8GiB\"\nnode_id = \"hv-1\"\n"
	if err := os.WriteFile(wcfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	ns := fmt.Sprintf("kumoi-dist-%d", os.Getpid())
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

	notify := filepath.Join(root, "run", "kumoi-test", "notify.sock")
	if err := os.MkdirAll(filepath.Dir(notify), 0o755); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := os.Chmod(notify, 0o777); err != nil { // the controller runs as kumoi
		t.Fatal(err)
	}
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(testcluster.Stretch(60 * time.Second)):
			t.Fatalf("no %s notification", what)
			return ""
		}
	}

	ctl := startUnit(t, root, ns, "kumoi-controller.service", "/run/kumoi-test/notify.sock")
	if m := next("controller READY"); !strings.Contains(m, "READY=1") {
		t.Fatalf("controller: %q", m)
	}
	wrk := startUnit(t, root, ns, "kumoi-worker.service", "/run/kumoi-test/notify.sock")
	if m := next("worker READY"); !strings.Contains(m, "READY=1") {
		t.Fatalf("worker: %q", m)
	}

	kumoi := func(args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "chroot", root, "/usr/bin/env", "-i",
			"KUMOI_TOKEN=" + secret, "/usr/bin/kumoi"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	testcluster.WaitFor(t, 60*time.Second, "host hv-1 ready", func() (bool, error) {
		out, err := kumoi("host", "get", "hv-1", "-t", "{{.status.state}}")
		return err == nil && out == "ready", fmt.Errorf("%v: %s", err, out)
	})
	if out, err := kumoi("vm", "create", "web-1", "--cpus", "1", "--memory", "512MiB", "--wait"); err != nil {
		t.Fatalf("vm create: %v\n%s", err, out)
	}
	out, err := kumoi("vm", "get", "web-1", "-o", "json")
	if err != nil {
		t.Fatalf("vm get: %v\n%s", err, out)
	}
	var o resource.Object
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatal(err)
	}
	if _, st := resource.VMStateOf(&o); st.Phase != resource.PhaseRunning || st.Host != "hv-1" {
		t.Errorf("web-1 is %s on %q", st.Phase, st.Host)
	}
	if out, err := kumoi("cluster", "status"); err != nil || !strings.Contains(out, "c1") {
		t.Errorf("cluster status: %v\n%s", err, out)
	}

	for _, u := range []*unit{wrk, ctl} {
		_ = u.cmd.Process.Signal(syscall.SIGTERM)
		if m := next(u.name + " STOPPING"); !strings.Contains(m, "STOPPING=1") {
			t.Errorf("%s: %q", u.name, m)
		}
		if err := u.wait(); err != nil {
			t.Errorf("%s after SIGTERM: %v\n%s", u.name, err, u.out.String())
		}
	}

	t.Logf("dpkg --purge: %s", sh("chroot", root, "dpkg", "--purge", "kumoi"))
	for _, gone := range []string{"usr/bin/kumoi", "etc/kumoi/kumoi.env", "lib/systemd/system/kumoi-controller.service"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("/%s is still there after purge (%v)", gone, err)
		}
	}
}

// debianRoot is a fresh Debian 12 minbase root: extracted from the cached
// tarball, made with debootstrap the first time.
func debianRoot(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("KUMOI_DIST_CACHE")
	if cache == "" {
		cache = "/var/cache/kumoi-test-dist"
	}
	tarball := filepath.Join(cache, "bookworm-minbase.tar")
	if _, err := os.Stat(tarball); err != nil {
		deboot := need(t, "debootstrap", "debootstrap")
		tmp := filepath.Join(cache, "build")
		_ = os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		run(t, deboot, "--variant=minbase", "bookworm", tmp, "http://deb.debian.org/debian")
		run(t, "tar", "-C", tmp, "-cf", tarball+".part", ".")
		run(t, "mv", tarball+".part", tarball)
		_ = os.RemoveAll(tmp)
		t.Logf("debootstrap: %s", time.Since(start).Round(time.Second))
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "tar", "-C", root, "-xf", tarball)
	return root
}

// readEnvFile reads a systemd EnvironmentFile (KEY=VALUE lines, #
// comments).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// unit is a service started as its unit file says.
type unit struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

func (u *unit) wait() error {
	select {
	case err := <-u.done:
		return err
	case <-time.After(testcluster.Stretch(40 * time.Second)):
		_ = u.cmd.Process.Kill()
		return fmt.Errorf("did not exit within 40s")
	}
}

// startUnit runs the unit file name of the installed package the way
// systemd would: as its User, with its EnvironmentFile, its ExecStartPre
// first (which must succeed), then its ExecStart with NOTIFY_SOCKET, in
// network namespace ns, chrooted to root.
func startUnit(t *testing.T, root, ns, name, notifySocket string) *unit {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "lib", "systemd", "system", name))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	if keys["Type"] != "notify" {
		t.Fatalf("%s: Type=%s", name, keys["Type"])
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + notifySocket}
	if ef := keys["EnvironmentFile"]; ef != "" {
		for k, v := range readEnvFile(t, filepath.Join(root, strings.TrimPrefix(ef, "-"))) {
			env = append(env, k+"="+v)
		}
	}
	user := "root:root"
	if u := keys["User"]; u != "" {
		user = u + ":" + keys["Group"]
	}
	command := func(line string) *exec.Cmd {
		args := append([]string{"netns", "exec", ns, "chroot", "--userspec=" + user, root, "/usr/bin/env", "-i"}, env...)
		return exec.Command("ip", append(args, strings.Fields(line)...)...)
	}
	if pre := keys["ExecStartPre"]; pre != "" {
		if out, err := command(pre).CombinedOutput(); err != nil {
			t.Fatalf("%s: ExecStartPre %s: %v\n%s", name, pre, err, out)
		}
	}
	u := &unit{name: name, cmd: command(keys["ExecStart"]), out: &bytes.Buffer{}, done: make(chan error, 1)}
	u.cmd.Stdout, u.cmd.Stderr = u.out, u.out
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { u.done <- u.cmd.Wait() }()
	t.Cleanup(func() {
		if u.cmd.ProcessState == nil {
			_ = u.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, u.out.String())
		}
	})
	return u
}
