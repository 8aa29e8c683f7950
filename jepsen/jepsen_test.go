package jepsen

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// TestRegisterKillLeader is a short register run under kill-leader: the
// history must be linearizable and the controllers must converge.
func TestRegisterKillLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real kumoi processes for ~15s")
	}
	bin := testcluster.Binary(t, "")
	out := t.TempDir()
	start := time.Now()
	res, err := Run(context.Background(), Config{
		Workload: "register", Nemeses: []string{"kill-leader"},
		Duration: 10 * time.Second, Concurrency: 4, Seed: 42,
		Bin: bin, OutDir: out, Quiet: time.Second, Fault: 1500 * time.Millisecond,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("run took %s: %d ok, %d fail, %d unknown, %d faults",
		time.Since(start).Round(time.Millisecond), res.Counts.OK, res.Counts.Fail, res.Counts.Unknown, len(res.Faults))
	b, err := os.ReadFile(filepath.Join(res.Dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var saved Result
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if !saved.Valid || !res.Valid {
		t.Fatalf("invalid run; anomalies: %+v; notes: %v", res.Anomalies, res.Notes)
	}
	if !res.Converged {
		t.Errorf("controllers did not converge: %v", res.Digests)
	}
	if res.Counts.OK == 0 {
		t.Errorf("no operation succeeded")
	}
	if len(res.Faults) == 0 {
		t.Errorf("no fault was injected")
	}
	for _, f := range res.Faults {
		if f.Error != "" {
			t.Errorf("fault %s at %s: %s", f.Nemesis, time.Duration(f.Start), f.Error)
		}
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "history.html")); err != nil {
		t.Errorf("history.html: %v", err)
	}
}
