package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kumoi/kumoi/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// browser starts headless chromium (make deps installs Debian's): missing,
// the test fails under CI and is skipped elsewhere.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := testcluster.Tool(t, "chromium", "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1366, 900), chromedp.Flag("headless", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// page drives one browser tab.
type page struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots
}

func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, testcluster.Stretch(20*time.Second))
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		p.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression that yields a string.
func (p *page) eval(js string) (string, error) {
	ctx, cancel := context.WithTimeout(p.ctx, testcluster.Stretch(5*time.Second))
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[string](js))
}

// waitText waits until the text of the first element matching sel
// contains want (the console updates from the event stream: no reload).
func (p *page) waitText(what, sel, want string) {
	p.t.Helper()
	js := fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)
	err := testcluster.Poll(context.Background(), 60*time.Second, func() (bool, error) {
		got, err := p.eval(js)
		if err != nil {
			return false, err
		}
		return strings.Contains(got, want), fmt.Errorf("%s is %q", sel, got)
	})
	if err != nil {
		p.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		p.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (p *page) shot(name string) {
	ctx, cancel := context.WithTimeout(p.ctx, testcluster.Stretch(10*time.Second))
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	f := filepath.Join(p.dir, name+".png")
	if err := os.WriteFile(f, png, 0o644); err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p.t.Logf("screenshot: %s", f)
}

// shotsDir is where the screenshots go: KUMOI_CONSOLE_SHOTS (docs/console.md
// refers to docs/console/), else the test's output directory.
func shotsDir(t *testing.T) string {
	if d := os.Getenv("KUMOI_CONSOLE_SHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// TestConsole opens the console of a cluster of real processes (ACLs on,
// one controller, two sim workers): it logs in with the management token,
// creates a VM (ha: restart) from the form and sees it reach running
// without a reload, stops it and starts it again, kills the worker of its
// host and sees the host go down and the VM run on the other host; then,
// logged in with a token that may only read VMs, sees the API's refusal of
// a stop in the page. It saves screenshots of the main pages.
func TestConsole(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Controllers: 1, Workers: 2})
	c.WaitLeader(30 * time.Second)
	for w := range c.Workers() {
		c.WaitHostState(fmt.Sprintf("%s%d", testcluster.WorkerNamePrefix, w+1), "ready", 30*time.Second)
	}
	p := &page{t: t, ctx: browser(t), dir: shotsDir(t)}
	url := c.URL(0) + "/ui/"

	p.do("open the console", chromedp.Navigate(url), chromedp.WaitVisible("#token"))
	p.shot("login")
	p.do("log in", chromedp.SendKeys("#token", testcluster.ManagementToken), chromedp.Click("#login"))
	p.waitText("the overview", "main h1", "Overview")
	p.waitText("the connection", "#conn", "live")

	// Create a VM from the form; it runs, seen live.
	p.do("open the VMs", chromedp.Navigate(url+"#/vms"), chromedp.WaitVisible("#c-name"))
	p.do("fill the form", chromedp.SendKeys("#c-name", "web"), chromedp.SetValue("#c-ha", "restart"),
		chromedp.SendKeys("#c-labels", "app=web"), chromedp.Click("#c-submit"))
	p.waitText("web running", `tr[data-vm="web"] td:nth-child(4)`, "running")
	p.shot("vms")

	// Stop it (with the confirmation), then start it again.
	p.do("stop", chromedp.Click(`tr[data-vm="web"] button.act-stop`), chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	p.waitText("web stopped", `tr[data-vm="web"] td:nth-child(4)`, "stopped")
	p.do("start", chromedp.Click(`tr[data-vm="web"] button.act-start`))
	p.waitText("web running again", `tr[data-vm="web"] td:nth-child(4)`, "running")
	host, err := p.eval(`document.querySelector('tr[data-vm="web"] td:nth-child(5)').textContent`)
	if err != nil || !strings.HasPrefix(host, testcluster.WorkerNamePrefix) {
		t.Fatalf("web's host %q (%v)", host, err)
	}
	p.do("open the VM", chromedp.Navigate(url+"#/vms/web"), chromedp.WaitVisible("#vm-phase"))
	p.waitText("web's history, from its creation", "#vm-history", "created")
	p.shot("vm-detail")

	// Its host dies: the host page shows it down, the VM runs elsewhere.
	var victim int
	fmt.Sscanf(strings.TrimPrefix(host, testcluster.WorkerNamePrefix), "%d", &victim)
	c.KillWorker(victim - 1)
	p.do("open the hosts", chromedp.Navigate(url+"#/hosts"), chromedp.WaitVisible("main table"))
	p.waitText(host+" down", fmt.Sprintf(`tr[data-host=%q] td:nth-child(2)`, host), "down")
	p.shot("hosts")
	// Drain the other host and enable it again, from its row.
	other := testcluster.WorkerNamePrefix + "2"
	if host == other {
		other = testcluster.WorkerNamePrefix + "1"
	}
	row := fmt.Sprintf(`tr[data-host=%q]`, other)
	// Live updates change the row in place: the button clicked is still the
	// page's button after the update (a replaced one loses a click that
	// lands during an update; that made this test flaky).
	if _, err := p.eval(fmt.Sprintf(`(window.kumoiProbe = document.querySelector(%q), "")`, row+" .actions button")); err != nil {
		t.Fatal(err)
	}
	p.do("drain "+other, chromedp.Click(row+" .actions button"), chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	p.waitText(other+" drained", row+" td:nth-child(3)", "no (drained)")
	if same, err := p.eval(fmt.Sprintf(`String(window.kumoiProbe === document.querySelector(%q)) + " " + window.kumoiProbe.textContent`, row+" .actions button")); err != nil || same != "true Enable" {
		t.Errorf("after the drain, the row's button is the same element, now Enable: got %q (%v)", same, err)
	}
	p.do("enable "+other, chromedp.Click(row+" .actions button"))
	p.waitText(other+" schedulable", row+" td:nth-child(3)", "yes")
	p.do("back to the VMs", chromedp.Navigate(url+"#/vms"), chromedp.WaitVisible("main table"))
	err = testcluster.Poll(context.Background(), 60*time.Second, func() (bool, error) {
		got, err := p.eval(`(() => { const r = document.querySelector('tr[data-vm="web"]'); return r ? r.children[3].textContent + " " + r.children[4].textContent : "" })()`)
		return err == nil && strings.HasPrefix(got, "running ") && !strings.HasSuffix(got, " "+host), fmt.Errorf("web is %q (%v)", got, err)
	})
	if err != nil {
		p.shot("failed-move")
		t.Fatalf("waiting for web to run elsewhere: %v", err)
	}
	p.do("open the overview", chromedp.Navigate(url+"#/overview"), chromedp.WaitVisible("main h2"))
	p.shot("overview")
	p.do("dark", chromedp.Click("#theme"))
	p.shot("overview-dark")
	p.do("light", chromedp.Click("#theme"))

	// A policy: listed with its state, disabled and enabled from its row.
	writePolicy(t, c)
	p.do("open the policies", chromedp.Navigate(url+"#/policies"), chromedp.WaitVisible(`tr[data-policy="log-vms"]`))
	p.waitText("the policy active", `tr[data-policy="log-vms"] td:nth-child(2)`, "active")
	p.do("disable", chromedp.Click(`tr[data-policy="log-vms"] .actions button`), chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	p.waitText("the policy disabled", `tr[data-policy="log-vms"] td:nth-child(2)`, "disabled")
	p.shot("policies")
	p.do("enable", chromedp.Click(`tr[data-policy="log-vms"] .actions button`))
	p.waitText("the policy active again", `tr[data-policy="log-vms"] td:nth-child(2)`, "active")

	// Every form field has a label (its accessible name).
	p.do("open the VMs", chromedp.Navigate(url+"#/vms"), chromedp.WaitVisible("#c-name"))
	if unlabelled, err := p.eval(`[...document.querySelectorAll("input, select")].filter(e => !e.labels || !e.labels.length).map(e => e.id || e.name).join(",")`); err != nil || unlabelled != "" {
		t.Errorf("fields without a label: %q (%v)", unlabelled, err)
	}

	// The controller goes away: the page says so, and recovers.
	c.Stop(0)
	p.waitText("the lost connection", "#conn", "connection lost")
	c.Start(0)
	c.WaitLeader(30 * time.Second)
	p.waitText("the connection back", "#conn", "live")

	// A token that may read VMs and its own policy: the console disables
	// what it may not do.
	p.do("log out", chromedp.Click("#logout"), chromedp.WaitVisible("#token"))
	p.do("log in as a viewer", chromedp.SendKeys("#token", viewerToken(t, c, true)), chromedp.Click("#login"))
	p.waitText("the VMs page (where it logged out)", "main h1", "VMs")
	p.do("open the VMs", chromedp.Navigate(url+"#/vms"), chromedp.WaitVisible(`tr[data-vm="web"]`))
	if d, err := p.eval(`String(document.querySelector('tr[data-vm="web"] button.act-stop').disabled) + " " + String(!!document.querySelector("#c-submit"))`); err != nil || d != "true false" {
		t.Errorf("a viewer's stop button disabled and create form absent: %q (%v)", d, err)
	}
	p.shot("viewer")

	// A token that may not read its policy: the console cannot tell, the
	// stop is refused by the API, and the page says why.
	p.do("log out", chromedp.Click("#logout"), chromedp.WaitVisible("#token"))
	p.do("log in read-only", chromedp.SendKeys("#token", viewerToken(t, c, false)), chromedp.Click("#login"))
	p.waitText("the VMs page (where it logged out)", "main h1", "VMs")
	p.do("open the VMs", chromedp.Navigate(url+"#/vms"), chromedp.WaitVisible(`tr[data-vm="web"]`))
	p.do("try to stop", chromedp.Click(`tr[data-vm="web"] button.act-stop`), chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	p.waitText("the refusal", "#alert", "may not")
	msg, _ := p.eval(`document.querySelector("#alert").textContent`)
	if !strings.Contains(msg, "403") || !strings.Contains(msg, "permission_denied") {
		t.Errorf("the refusal shows %q", msg)
	}
	p.shot("refused")
}

// writePolicy makes a small policy with the CLI.
func writePolicy(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "log-vms.star")
	src := "events = [\"vm.created\"]\n\ndef on_event(ev):\n    print(ev.name)\n"
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.Bin(), "policy", "apply", "log-vms", f)
	cmd.Env = testcluster.CLIEnv(append(os.Environ(), "KUMOI_ADDR="+strings.Join(c.URLs(), ",")))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kumoi policy apply: %v\n%s", err, out)
	}
}

// viewerToken makes a token whose one policy may read VMs and hosts (and,
// with acl, its own policy).
func viewerToken(t *testing.T, c *testcluster.Cluster, acl bool) string {
	t.Helper()
	env := testcluster.CLIEnv(append(os.Environ(), "KUMOI_ADDR="+strings.Join(c.URLs(), ",")))
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(c.Bin(), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kumoi %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	name, rules := "vm-readers", []string{"--rule", "vm:read", "--rule", "host:read"}
	if acl {
		name, rules = "vm-viewers", append(rules, "--rule", "acl:read")
	}
	run(append([]string{"acl", "policy", "create", name}, rules...)...)
	return run("acl", "token", "create", "--policy", name, "--name", name, "-t", "{{.secret_id}}")
}
