package cli

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/agent"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/script"
)

// runCLIStdin is runCLI with standard input.
func runCLIStdin(tb testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	app := NewApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter, app.Reader = &out, &errOut, strings.NewReader(stdin)
	code = run(context.Background(), app, append([]string{"kumoi"}, args...))
	return out.String(), errOut.String(), code
}

// TestScriptCommands runs kumoi run and kumoi shell against a dev cluster
// (one controller, two simulated hosts).
func TestScriptCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := agent.StartDev(ctx, agent.DevConfig{Controllers: 1, Hosts: 2, BindIP: "127.0.0.52", APIPort: 17400})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	addr := "--addr=" + strings.Join(d.Addrs(), ",")
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type step struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout []string // substrings of stdout ("" entries ignored)
		exact  string   // all of stdout, when set
		stderr []string // substrings of stderr; none: stderr must be empty
	}
	check := func(t *testing.T, s step) {
		t.Helper()
		out, errOut, code := runCLIStdin(t, s.stdin, append([]string{addr}, s.args...)...)
		if code != s.code {
			t.Errorf("kumoi %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.code, out, errOut)
		}
		for _, w := range s.stdout {
			if !strings.Contains(out, w) {
				t.Errorf("kumoi %s: stdout lacks %q:\n%s", strings.Join(s.args, " "), w, out)
			}
		}
		if s.exact != "" && out != s.exact {
			t.Errorf("kumoi %s: stdout =\n%s\nwant\n%s", strings.Join(s.args, " "), out, s.exact)
		}
		for _, w := range s.stderr {
			if !strings.Contains(errOut, w) {
				t.Errorf("kumoi %s: stderr lacks %q:\n%s", strings.Join(s.args, " "), w, errOut)
			}
		}
		if len(s.stderr) == 0 && errOut != "" {
			t.Errorf("kumoi %s: unexpected stderr %q", strings.Join(s.args, " "), errOut)
		}
	}

	// The hosts join within a few seconds.
	check(t, step{name: "wait for hosts", args: []string{"run", "-e",
		`wait_until(lambda: [h.state for h in hosts()] == ["ready", "ready"], timeout="30s")`}, exact: "True\n"})

	argv := write("argv.star", "print(argv)\nprint(len(hosts()), len(vms()))\n")
	syntaxErr := write("syntax.star", "x = 1\nif x\n    print(x)\n")
	failing := write("fail.star", "def get(name):\n    return vm(name)\n\nget(\"nope\")\n")
	for _, s := range []step{
		{name: "argv after --", args: []string{"run", argv, "--", "a", "--b"}, exact: "[\"a\", \"--b\"]\n2 0\n"},
		{name: "argv without --", args: []string{"run", argv, "a", "b"}, exact: "[\"a\", \"b\"]\n2 0\n"},
		{name: "eval expression prints a host table", args: []string{"run", "-e", `hosts()`},
			stdout: []string{"NAME    STATE   SCHEDULABLE", "sim-1   ready   yes", "sim-2   ready"}},
		{name: "eval one host", args: []string{"run", "-e", `host("sim-2")`}, stdout: []string{"sim-2   ready"}},
		{name: "eval other values", args: []string{"run", "-e", `[h.name for h in hosts()]`}, exact: "[\"sim-1\", \"sim-2\"]\n"},
		{name: "eval statement prints nothing", args: []string{"run", "-e", `x = hosts()`}, exact: ""},
		{name: "eval with argv", args: []string{"run", "-e", `print(argv[0])`, "--", "hello"}, exact: "hello\n"},
		{name: "runtime error", args: []string{"run", failing}, code: 1,
			stderr: []string{"Traceback (most recent call last):\n", "fail.star:4:4: in <toplevel>\n", "fail.star:2:14: in get\n", "Error: vm: vm \"nope\" not found\n"}},
		{name: "syntax error", args: []string{"run", syntaxErr}, code: 1,
			stderr: []string{"syntax.star:2:5: got newline, want ':'\n    if x\n        ^\n"}},
		{name: "wrong argument type", args: []string{"run", "-e", `create_vm("x", cpus="two")`}, code: 1,
			stderr: []string{`create_vm: for parameter "cpus": got string, want int`, "-e:1:10: in <expr>"}},
		{name: "step limit", args: []string{"run", "--max-steps", "5000", "-e", "while True: pass"}, code: 1,
			stderr: []string{"Error: script stopped: step limit of 5000 exceeded (raise it with --max-steps)"}},
		{name: "time limit", args: []string{"run", "-e", `sleep("1h")`, "--timeout", "300ms"}, code: 1,
			stderr: []string{"Error: script stopped: time limit of 300ms exceeded (raise it with --timeout)"}},
		{name: "missing script", args: []string{"run"}, code: 2, stderr: []string{"kumoi: missing script: kumoi run FILE.star"}},
		{name: "unreadable script", args: []string{"run", filepath.Join(dir, "none.star")}, code: 1,
			stderr: []string{"kumoi: cannot read the script: open ", "none.star: no such file or directory"}},
		{name: "zero steps", args: []string{"run", "--max-steps", "0", "-e", "1"}, code: 2, stderr: []string{"invalid --max-steps 0"}},
		{name: "shell takes no arguments", args: []string{"shell", "x"}, code: 2, stderr: []string{"unexpected argument \"x\""}},
	} {
		t.Run(s.name, func(t *testing.T) { check(t, s) })
	}

	t.Run("shell with piped stdin", func(t *testing.T) {
		stdin := `web = [create_vm("sh-%d" % i, labels={"tier": "sh"}, wait=True) for i in range(3)]
vms("tier=sh")
def names(xs):
    return [x.name for x in xs]

names(web)
vm("sh-0").stop().wait("stopped")
pmap(lambda v: v.reboot(), vms("tier=sh"), workers=2)
len(failures(_))
1 +
vm("nope")
pforeach(lambda v: v.delete(),
         vms("tier=sh"))
[v.name for v in vms("tier=sh")]
`
		out, errOut, code := runCLIStdin(t, stdin, addr, "shell")
		if code != 1 {
			t.Errorf("exit %d, want 1 (a statement failed)\nstderr: %s", code, errOut)
		}
		for _, w := range []string{
			"NAME   CPUS   MEMORY   POWER     PHASE     HOST",
			"sh-0   1      256MiB   running   running   sim-",
			"[\"sh-0\", \"sh-1\", \"sh-2\"]\n",
			"sh-0   1      256MiB   stopped   stopped   sim-",
			"1 of 3 failed:\nITEM   ERROR\nsh-0   vm.reboot: vm \"sh-0\" is stopped: ",
			"\n1\n[]\n[]\n",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("stdout lacks %q:\n%s", w, out)
			}
		}
		for _, w := range []string{"<stdin>:1:4: got newline, want primary expression\n    1 +\n", "Error: vm: vm \"nope\" not found"} {
			if !strings.Contains(errOut, w) {
				t.Errorf("stderr lacks %q:\n%s", w, errOut)
			}
		}
		if strings.Contains(out, ">>>") {
			t.Errorf("prompts printed without a terminal:\n%s", out)
		}
	})
	t.Run("shell exits 0 when all went well", func(t *testing.T) {
		check(t, step{stdin: "x = 6 * 7\nx\n\n", args: []string{"shell"}, exact: "42\n"})
		check(t, step{stdin: "def f():\n    return 1", args: []string{"shell"}, exact: ""}) // a block ended by the end of input
	})

	t.Run("completion", func(t *testing.T) {
		cl, err := client.New(client.Config{Addrs: d.Addrs()})
		if err != nil {
			t.Fatal(err)
		}
		sess := script.NewSession(script.Env{Client: cl}, nil)
		if _, err := sess.Exec(context.Background(), "c.star", []byte(`h = host("sim-1")`)); err != nil {
			t.Fatal(err)
		}
		cp := completer{sess: sess}
		for _, tc := range []struct {
			line   string
			want   []string
			length int
		}{
			{"vm", []string{"", "s"}, 2},
			{"x = pm", []string{"ap"}, 2},
			{"h.dr", []string{"ain"}, 2},
			{"print(h.ca", []string{"pacity"}, 2},
			{"h.", []string{"allocated", "capacity", "drain", "enable", "index", "labels", "name", "reason", "refresh", "schedulable", "set_labels", "spec", "state", "status", "vms"}, 0},
		} {
			got, n := cp.Do([]rune(tc.line), len([]rune(tc.line)))
			var gs []string
			for _, g := range got {
				gs = append(gs, string(g))
			}
			if !slices.Equal(gs, tc.want) || n != tc.length {
				t.Errorf("Do(%q) = %q, %d; want %q, %d", tc.line, gs, n, tc.want, tc.length)
			}
		}
	})
}

// TestScriptWritesOnStreams: kumoi run sends a script's writes on request
// streams; a controller without them (the fake) is asked once, then sent
// the writes over HTTP.
func TestScriptWritesOnStreams(t *testing.T) {
	s := testapi.New(t)
	out, errOut, code := runCLI(t, "--addr="+s.URL, "run", "-e", `create_vm("st-1")`+"\n"+`create_vm("st-2")`)
	if code != 0 {
		t.Fatalf("kumoi run: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	upgrades, creates := 0, 0
	for _, r := range s.Requests() {
		switch {
		case r.Method == http.MethodPost && r.Path == "/v1/stream":
			upgrades++
		case r.Method == http.MethodPost && r.Path == "/v1/vms":
			creates++
		}
	}
	if upgrades != 1 || creates != 2 {
		t.Fatalf("%d stream upgrades asked for and %d creates over HTTP, want 1 and 2", upgrades, creates)
	}
}
