package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// debugCommand is 'kumoi operator debug'.
func debugCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "debug",
		Usage:     "collect a debug bundle from every controller (status, cluster, metrics, logs, goroutines, config)",
		UsageText: "kumoi operator debug [--output FILE] [--log-lines N]",
		Description: `Asks the cluster for its controllers (GET /v1/cluster: the controllers
alive in gossip, plus every address of --addr) and collects from each one,
into one gzip-compressed tar archive:

   cluster.json        the Raft servers and gossip members (from the leader)
   <node>/status.json  GET /v1/status: its view of itself
   <node>/self.json    GET /v1/agent/self: status and its agent's flags,
                       with the secrets (--token, --acl-initial-management,
                       --encrypt) redacted
   <node>/logs.txt     GET /v1/agent/logs: its last log lines (the agent
                       keeps 1 MiB of them)
   <node>/metrics.txt  GET /metrics
   <node>/goroutines.txt  GET /debug/pprof/goroutine?debug=2
   <node>/heap.pprof   GET /debug/pprof/heap (go tool pprof)
   manifest.json       what was asked of whom, and every error

A controller that does not answer is recorded in manifest.json, not
fatal. Needs a token with cluster:admin. Attach the archive to a bug
report; it holds object counts and names in the logs, no secrets.

Example:
   kumoi operator debug --output /tmp/kumoi-debug.tar.gz`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"O"}, Usage: "the archive to write (default kumoi-debug-<UTC time>.tar.gz here)"},
			&cli.IntFlag{Name: "log-lines", Usage: "only the last N log lines of each controller (default: all it kept)"},
		},
		Action: operatorDebug,
	})
}

// debugManifest is the manifest.json of a debug bundle.
type debugManifest struct {
	Created     time.Time         `json:"created"`
	Version     string            `json:"kumoi_version"` // of the CLI that collected it
	Controllers []string          `json:"controllers"`   // API addresses asked
	Files       []string          `json:"files"`
	Errors      map[string]string `json:"errors"` // file -> why it is missing
}

func operatorDebug(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if n := c.Int("log-lines"); n < 0 {
		return usagef("--log-lines %d: give a positive number, or leave it out for every line kept", n)
	}
	out := c.String("output")
	if out == "" {
		out = "kumoi-debug-" + time.Now().UTC().Format("20060102T150405Z") + ".tar.gz"
	}
	s, err := dial(c, true)
	if err != nil {
		return err
	}
	defer s.close()
	given, err := addrs(c)
	if err != nil {
		return err
	}
	m := &debugManifest{Created: time.Now().UTC(), Version: Version, Errors: map[string]string{}}
	files := map[string][]byte{}
	put := func(name string, data []byte, err error) {
		if err != nil {
			m.Errors[name] = err.Error()
			return
		}
		files[name] = data
		m.Files = append(m.Files, name)
	}

	cl, err := s.client.Cluster(s.ctx)
	var clJSON []byte
	if err == nil {
		clJSON, err = json.MarshalIndent(cl, "", "  ")
	}
	put("cluster.json", clJSON, err)
	targets := debugTargets(given, cl)
	m.Controllers = targets

	cfg, err := clientConfig(c, given)
	if err != nil {
		return err
	}
	logs := "/v1/agent/logs"
	if n := c.Int("log-lines"); n > 0 {
		logs += fmt.Sprintf("?lines=%d", n)
	}
	for _, addr := range targets {
		cfg.Addrs = []string{addr}
		one, err := client.New(cfg)
		if err != nil {
			m.Errors[addr] = err.Error()
			continue
		}
		dir := debugDirName(addr)
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		st, err := one.Status(ctx)
		var stJSON []byte
		if err == nil {
			stJSON, err = json.MarshalIndent(st, "", "  ")
			if resource.ValidateName(st.NodeID) == nil {
				dir = st.NodeID // a name: no "/" or ".." in the archive's paths
			}
		}
		put(dir+"/status.json", stJSON, err)
		self, err := one.AgentSelf(ctx)
		var selfJSON []byte
		if err == nil {
			selfJSON, err = json.MarshalIndent(self, "", "  ")
		}
		put(dir+"/self.json", selfJSON, err)
		for _, f := range []struct{ name, path string }{
			{"logs.txt", logs},
			{"metrics.txt", "/metrics"},
			{"goroutines.txt", "/debug/pprof/goroutine?debug=2"},
			{"heap.pprof", "/debug/pprof/heap"},
		} {
			var buf bytes.Buffer
			err := one.GetRaw(ctx, f.path, &buf)
			put(dir+"/"+f.name, buf.Bytes(), err)
		}
		cancel()
	}
	slices.Sort(m.Files)
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	files["manifest.json"] = mj
	var archive bytes.Buffer
	if err := writeTarGz(&archive, files, m.Created); err != nil {
		return err
	}
	if err := writeFileAtomic(out, archive.Bytes()); err != nil {
		return err
	}
	w := writer(c)
	fmt.Fprintf(w, "wrote %s: %d files from %d controllers\n", out, len(m.Files)+1, len(targets))
	for _, name := range slices.Sorted(maps.Keys(m.Errors)) {
		fmt.Fprintf(w, "  missing %s: %s\n", name, m.Errors[name])
	}
	return nil
}

// debugTargets is every controller to ask: the addresses given, and the
// API address of every live controller gossip knows (with the scheme of
// the first address given).
func debugTargets(given []string, cl *resource.Cluster) []string {
	out := slices.Clone(given)
	scheme := "http"
	if u, err := url.Parse(given[0]); err == nil && u.Scheme != "" {
		scheme = u.Scheme
	}
	if cl != nil {
		for _, mem := range cl.Members {
			if api := mem.Tags["api"]; mem.Role == "controller" && mem.Status == "alive" && api != "" {
				if a := scheme + "://" + api; !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// debugDirName names a controller's directory by its address until its
// status names it.
func debugDirName(addr string) string {
	r := strings.NewReplacer("://", "_", ":", "_", "/", "_")
	return r.Replace(addr)
}

// writeTarGz writes files (name -> content) as a gzip-compressed tar
// archive, in name order.
func writeTarGz(w *bytes.Buffer, files map[string][]byte, mtime time.Time) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(files[n])), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
