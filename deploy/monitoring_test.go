package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

const (
	rulesFile     = "prometheus/kumoi-alerts.yml"
	rulesTestFile = "prometheus/kumoi-alerts_test.yml"
	dashboardFile = "grafana/kumoi-dashboard.json"
)

// promtool finds Debian's promtool (package prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	return testcluster.Tool(t, "promtool", "prometheus")
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestAlertRules: promtool accepts the rules, and its unit tests of them
// (kumoi-alerts_test.yml: alerts that fire after their "for", and not
// before) pass.
func TestAlertRules(t *testing.T) {
	out := runPromtool(t, "check", "rules", rulesFile)
	if !strings.Contains(out, "SUCCESS: 11 rules found") {
		t.Errorf("promtool check rules: %s", out)
	}
	runPromtool(t, "test", "rules", rulesTestFile)
}

type dashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// TestDashboard: the dashboard is Grafana JSON with a uid, titled panels
// with unique ids, each querying something, and every query is PromQL
// promtool accepts (written as recording rules, which it parses).
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard uid %q title %q, %d panels", d.UID, d.Title, len(d.Panels))
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if p.Title == "" || len(p.Targets) == 0 || ids[p.ID] {
			t.Errorf("panel %d %q: a title, a query and a unique id are needed", p.ID, p.Title)
		}
		ids[p.ID] = true
		for i, tg := range p.Targets {
			js, _ := json.Marshal(tg.Expr) // a JSON string is a YAML string
			fmt.Fprintf(&rules, "      - record: panel_%d_%d\n        expr: %s\n", p.ID, i, js)
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "rules", f)
}

var metricName = regexp.MustCompile(`\bkumoi_[A-Za-z0-9_]+`)

// TestMetricsExist starts a controller and a worker and checks that every
// kumoi_ metric the rules and the dashboard query is one the controller
// serves on /metrics: a renamed metric breaks this test, not an alert.
func TestMetricsExist(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Controllers: 1, Workers: 1})
	c.WaitLeader(30 * time.Second)
	var served map[string]bool
	testcluster.WaitFor(t, 30*time.Second, "the controller's metrics", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", c.URL(0)+"/metrics", nil)
		if err != nil {
			return false, err
		}
		resp, err := c.HTTPClient().Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			return false, fmt.Errorf("status %d: %v", resp.StatusCode, err)
		}
		served = map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			served[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
		// Raft's commit timer appears with the first commits.
		return served["kumoi_raft_commitTime"] && served["kumoi_hosts"], fmt.Errorf("not all metrics yet")
	})
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var queried []string
	queried = append(queried, metricName.FindAllString(string(rules), -1)...)
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			queried = append(queried, metricName.FindAllString(tg.Expr, -1)...)
		}
	}
	slices.Sort(queried)
	queried = slices.Compact(queried)
	if len(queried) < 10 {
		t.Fatalf("only %d metrics queried: %v", len(queried), queried)
	}
	for _, name := range queried {
		if !served[name] {
			t.Errorf("%s is queried by the rules or the dashboard, but no controller serves it", name)
		}
	}
	t.Logf("%d metrics queried: %v", len(queried), queried)
}
