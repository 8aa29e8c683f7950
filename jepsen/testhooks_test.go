package jepsen

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// TestCheckTestHooks: a selftest config (UnsafeStaleReads) is refused
// unless its binary has --debug-unsafe-stale-reads, that is unless it was
// built with kumoi_testhooks; other configs are not probed.
func TestCheckTestHooks(t *testing.T) {
	release := testcluster.Binary(t, "")
	tagged := testcluster.TestHooksBinary(t)
	ctx := context.Background()
	hint := []string{"make jepsen-selftest", "bin/kumoi-testhooks", "kumoi_testhooks"}
	for _, tc := range []struct {
		name string
		cfg  Config
		env  string   // $KUMOI_BIN
		want []string // substrings of the error; nil: no error
	}{
		{name: "not a selftest", cfg: Config{Bin: release}},
		{name: "not a selftest, no binary at all", cfg: Config{Bin: "/nonexistent/kumoi"}},
		{name: "release binary", cfg: Config{Bin: release, UnsafeStaleReads: true},
			want: append([]string{release + " has no --debug-unsafe-stale-reads", "release build"}, hint...)},
		{name: "release binary from KUMOI_BIN", cfg: Config{UnsafeStaleReads: true}, env: release,
			want: append([]string{release + " has no --debug-unsafe-stale-reads"}, hint...)},
		{name: "no binary given", cfg: Config{UnsafeStaleReads: true},
			want: append([]string{"need a kumoi binary built with the tag kumoi_testhooks, given with --bin"}, hint...)},
		{name: "tagged binary", cfg: Config{Bin: tagged, UnsafeStaleReads: true}},
		{name: "tagged binary from KUMOI_BIN", cfg: Config{UnsafeStaleReads: true}, env: tagged},
		{name: "not a kumoi binary", cfg: Config{Bin: "/nonexistent/kumoi", UnsafeStaleReads: true},
			want: []string{"cannot tell whether /nonexistent/kumoi has --debug-unsafe-stale-reads"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUMOI_BIN", tc.env)
			err := checkTestHooks(ctx, tc.cfg)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("checkTestHooks: %v; want no error", err)
			case tc.want != nil && err == nil:
				t.Fatalf("checkTestHooks: no error; want one with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("checkTestHooks: %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestRunRefusesReleaseBinaryForSelftest: Run with UnsafeStaleReads and
// the release binary returns the refusal and no result, before it creates
// a run directory or starts a process.
func TestRunRefusesReleaseBinaryForSelftest(t *testing.T) {
	out := t.TempDir()
	res, err := Run(context.Background(), Config{Workload: "register", Bin: testcluster.Binary(t, ""), OutDir: out, UnsafeStaleReads: true})
	if res != nil || err == nil || !strings.HasPrefix(err.Error(), "refusing to run: ") || !strings.Contains(err.Error(), "make jepsen-selftest") {
		t.Fatalf("Run: result %v, error %v; want no result and a refusal naming make jepsen-selftest", res, err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("the refused run left %d entries in its output directory", len(ents))
	}
}
