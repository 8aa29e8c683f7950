package cli

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/snapfile"
	"github.com/kumoi/kumoi/resource"
)

// maxSnapshotState caps the state a snapshot file may hold when this
// binary reads one (as the controllers' default limit).
const maxSnapshotState = 1 << 30

// snapshotCommand is 'kumoi operator snapshot'.
func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:      "snapshot",
		Usage:     "save, restore and inspect snapshots of the cluster's whole state (backups)",
		UsageText: "kumoi operator snapshot <save|restore|inspect> FILE [options]",
		Description: `A snapshot is the cluster's whole replicated state — every object, the ACL
policies and tokens, the cluster's identity — as of one Raft index, in one
file: a gzip-compressed tar archive of meta.json (cluster ID, index, the
version that saved it, object counts, the state's SHA-256) and state.json.
Controllers' data directories need no other backup (docs/operations.md).

Examples:
   kumoi operator snapshot save backup.snap
   kumoi operator snapshot inspect backup.snap
   kumoi operator snapshot restore backup.snap
   kumoi operator snapshot restore -force backup.snap   # into a new cluster`,
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "save",
				Usage:     "save a consistent snapshot of the cluster's state to FILE",
				UsageText: "kumoi operator snapshot save FILE [-o json|yaml]",
				Description: `Asks the leader for a snapshot of the state as of a linearizable read (every
write acknowledged before the command is in it), checks its checksum and
that it decodes, and writes it to FILE (through FILE.part, renamed when
complete: FILE is never a partial snapshot). Needs a token with
cluster:admin. Prints what the snapshot holds.`,
				Action: snapshotSave,
			}),
			leaf(&cli.Command{
				Name:      "restore",
				Usage:     "replace the cluster's whole state with a snapshot's",
				UsageText: "kumoi operator snapshot restore FILE [-force] [-o json|yaml]",
				Description: `Checks FILE (checksum, format, every record), then sends it to the leader,
which replaces the state of every controller with it through Raft. Every
object not in the snapshot is gone, every object in it is back as it was;
writes in flight when it lands fail. Workers then make their hosts match
the restored state. Needs a token with cluster:admin — of the cluster being
restored into; afterwards the ACL tokens are the snapshot's.

Refused while any host is ready or draining: under running workers a VM
that moved since the save could start on its old host before its new host
destroys it, and volumes created or moved since the save would be deleted.
Stop the workers (no Kumoi domain running), wait until the hosts are down,
then restore (docs/operations.md, "Backup and restore").

A snapshot saved from another cluster (its cluster ID differs) is refused
unless -force: then the cluster also takes the snapshot's identity, so that
the workers, domains and volumes of the cluster the snapshot came from
belong to it again. That is disaster recovery: every controller lost,
a new cluster bootstrapped, the last snapshot restored into it
(docs/operations.md).`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Usage: "restore a snapshot of another cluster, giving this cluster its identity"},
				},
				Action: snapshotRestore,
			}),
			leaf(&cli.Command{
				Name:      "inspect",
				Usage:     "check a snapshot file and show what it holds (no cluster needed)",
				UsageText: "kumoi operator snapshot inspect FILE [-o json|yaml]",
				Description: `Reads FILE without contacting any controller: checks its checksum and that
every record decodes as a restore would, and shows its cluster ID, index,
the version that saved it and its objects per kind. Exits non-zero for a
damaged or foreign file.`,
				Action: snapshotInspect,
			}),
		},
	}
}

// snapshotReport is what save and inspect print.
type snapshotReport struct {
	File string `json:"file"`
	resource.SnapshotMeta
}

func oneFile(c *cli.Context) (string, error) {
	switch c.NArg() {
	case 0:
		return "", usagef("missing FILE: %s", c.Command.UsageText)
	case 1:
		return c.Args().First(), nil
	}
	return "", usagef("too many arguments %q: %s takes one FILE; put flags before it", c.Args().Slice()[1:], c.Command.HelpName)
}

// checkSnapshot reads an archive and checks its state as a restore would.
func checkSnapshot(archive []byte) (*resource.SnapshotMeta, error) {
	meta, state, err := snapfile.Read(bytes.NewReader(archive), maxSnapshotState)
	if err != nil {
		return nil, err
	}
	info, err := fsm.ValidateSnapshot(bytes.NewReader(state))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", snapfile.ErrInvalid, err)
	}
	if info.ClusterID != meta.ClusterID || info.AppliedIndex != meta.Index {
		return nil, fmt.Errorf("%w: meta.json says cluster %s at index %d, the state is of cluster %s at index %d",
			snapfile.ErrInvalid, meta.ClusterID, meta.Index, info.ClusterID, info.AppliedIndex)
	}
	return meta, nil
}

func snapshotSave(c *cli.Context) error {
	file, err := oneFile(c)
	if err != nil {
		return err
	}
	s, err := dial(c, true)
	if err != nil {
		return err
	}
	defer s.close()
	var buf bytes.Buffer
	if err := s.client.SaveSnapshot(s.ctx, &buf); err != nil {
		return s.fail(err)
	}
	meta, err := checkSnapshot(buf.Bytes())
	if err != nil {
		return fmt.Errorf("the snapshot the leader sent is not valid, nothing written: %w", err)
	}
	if err := writeFileAtomic(file, buf.Bytes()); err != nil {
		return err
	}
	return printSnapshot(c, file, meta, "saved")
}

// writeFileAtomic writes data to file through file.part, synced, then
// renamed: file is either absent, as before, or complete.
func writeFileAtomic(file string, data []byte) error {
	part := file + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(part)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(part)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(part)
		return err
	}
	if err := os.Rename(part, file); err != nil {
		os.Remove(part)
		return err
	}
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func readSnapshotFile(file string) ([]byte, *resource.SnapshotMeta, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSnapshotState+1))
	if err != nil {
		return nil, nil, err
	}
	meta, err := checkSnapshot(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return data, meta, nil
}

func snapshotInspect(c *cli.Context) error {
	file, err := oneFile(c)
	if err != nil {
		return err
	}
	_, meta, err := readSnapshotFile(file)
	if err != nil {
		return err
	}
	return printSnapshot(c, file, meta, "")
}

func snapshotRestore(c *cli.Context) error {
	file, err := oneFile(c)
	if err != nil {
		return err
	}
	data, meta, err := readSnapshotFile(file)
	if err != nil {
		return err
	}
	s, err := dial(c, true)
	if err != nil {
		return err
	}
	defer s.close()
	res, err := s.client.RestoreSnapshot(s.ctx, data, c.Bool("force"))
	if client.IsConflict(err) && !c.Bool("force") {
		return fmt.Errorf("%w\n(the snapshot %s is of cluster %s: add -force to replace this cluster's state and identity with it)", err, file, meta.ClusterID)
	}
	if err != nil {
		return s.fail(err)
	}
	if done, err := printData(c, res); done {
		return err
	}
	w := writer(c)
	fmt.Fprintf(w, "restored %s: %d objects of cluster %s saved at index %d, now at raft index %d\n",
		file, countObjects(res.Objects), res.ClusterID, res.SnapshotIndex, res.Index)
	if res.Replaced != "" {
		fmt.Fprintf(w, "this cluster was %s and is now %s (the snapshot's identity); use the snapshot's ACL tokens from now on\n", res.Replaced, res.ClusterID)
	}
	return nil
}

func countObjects(m map[resource.Kind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// printSnapshot prints a snapshot's meta: as data, or as lines.
func printSnapshot(c *cli.Context, file string, meta *resource.SnapshotMeta, verb string) error {
	if done, err := printData(c, snapshotReport{File: file, SnapshotMeta: *meta}); done {
		return err
	}
	w := writer(c)
	if verb != "" {
		fmt.Fprintf(w, "%s %s\n", verb, file)
	}
	t := newTable(w, "FIELD", "VALUE")
	t.row("cluster", meta.ClusterID)
	t.row("index", strconv.FormatUint(meta.Index, 10))
	t.row("created", meta.Created.UTC().Format(time.RFC3339))
	t.row("node", meta.Node)
	t.row("version", meta.Version)
	t.row("protocol", strconv.Itoa(meta.Protocol))
	t.row("state_version", strconv.Itoa(meta.StateVersion))
	t.row("size", strconv.FormatInt(meta.Size, 10))
	t.row("sha256", meta.SHA256)
	t.row("objects", strconv.Itoa(countObjects(meta.Objects)))
	for _, k := range slices.Sorted(maps.Keys(meta.Objects)) {
		t.row("objects."+string(k), strconv.Itoa(meta.Objects[k]))
	}
	t.row("acl_policies", strconv.Itoa(meta.ACLPolicies))
	t.row("acl_tokens", strconv.Itoa(meta.ACLTokens))
	return t.flush()
}
