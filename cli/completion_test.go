package cli

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// TestCompletion: kumoi answers --generate-bash-completion with the names
// of the objects after a verb that takes one, and the bash script
// completes commands, verbs and names through it for real (urfave/cli
// reads os.Args for commands and flags, so those are checked through the
// binary); the other shells' scripts print.
func TestCompletion(t *testing.T) {
	s := apitest.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "create", args: []string{"vm", "create", "web-1", "--cpus", "1", "--memory", "256MiB"}, stdout: []string{"web-1"}},
		{name: "create 2", args: []string{"vm", "create", "web-2", "--cpus", "1", "--memory", "256MiB"}, stdout: []string{"web-2"}},
		{name: "network", args: []string{"network", "create", "net1", "--cidr", "10.10.0.0/24"}, stdout: []string{"net1"}},
		{name: "vm names", args: []string{"vm", "get", "--generate-bash-completion"}, exact: "web-1\nweb-2\n"},
		{name: "network names", args: []string{"network", "delete", "--generate-bash-completion"}, exact: "net1\n"},
		{name: "bash", args: []string{"completion", "bash"}, stdout: []string{"complete -o bashdefault -o default -F _kumoi_complete kumoi"}},
		{name: "zsh", args: []string{"completion", "zsh"}, stdout: []string{"#compdef kumoi", "compdef _kumoi kumoi"}},
		{name: "fish", args: []string{"completion", "fish"}, stdout: []string{"complete -c kumoi -f -a '(__kumoi_complete)'"}},
		{name: "unknown shell", args: []string{"completion", "tcsh"}, code: 2, stderr: `kumoi: unknown shell "tcsh": use bash, zsh or fish`},
	})
	// A cluster that does not answer: no names, soon.
	start := time.Now()
	out, _, code := runCLI(t, "--addr", "http://127.0.0.1:1", "vm", "get", "--generate-bash-completion")
	if code != exitOK || strings.Contains(out, "web") || time.Since(start) > testcluster.Stretch(5*time.Second) {
		t.Errorf("unreachable cluster: exit %d, %q after %s", code, out, time.Since(start))
	}

	// The bash script, run by bash against the kumoi binary.
	bin := testcluster.Binary(t, "")
	script, _, _ := runCLI(t, "completion", "bash")
	for _, tc := range []struct {
		words string
		cword int
		want  string
	}{
		{"kumoi --addr " + s.URL + " vm ge", 4, "get"},
		{"kumoi --addr " + s.URL + " v", 3, "vm volume vol version"},
		{"kumoi --addr " + s.URL + " vm get w", 5, "web-1 web-2"},
		{"kumoi --addr " + s.URL + " network get n", 5, "net1"},
	} {
		words := strings.Replace(tc.words, "kumoi", bin, 1)
		prog := script + "\nCOMP_WORDS=(" + words + "); COMP_CWORD=" + strconv.Itoa(tc.cword) + "; _kumoi_complete; echo \"${COMPREPLY[*]}\"\n"
		cmd := exec.Command("bash", "-c", prog)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "KUMOI_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		got, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != tc.want {
			t.Errorf("bash completion of %q: %q (%v), want %q", tc.words, got, err, tc.want)
		}
	}
}
