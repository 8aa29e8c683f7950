package cli

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

func imageCommand() *cli.Command {
	return &cli.Command{
		Name:      "image",
		Usage:     "manage the disk image catalog",
		UsageText: "kumoi image <create|get|list|delete> [options] [NAME]",
		Description: `An image is a catalog entry for a disk image: a file in the workers' image
directory (--image-dir) or an http(s) URL, its format (qcow2 or raw) and its
SHA-256. A worker fetches an image the first time a VM on its host needs it,
verifies the checksum, caches it, and reports per host whether it is ready;
a checksum mismatch fails the VM with that reason. Volumes and VM disks made
from an image are copy-on-write overlays on the cached copy. An image cannot
change once created: a new version is a new image.

Examples:
   kumoi image create debian --file debian-12.qcow2 --sha256 9f86d0…
   kumoi image create alpine --url https://example.com/alpine.qcow2 --format qcow2 --sha256 2c26b4…
   kumoi image list
   kumoi image get debian
   kumoi image delete debian`,
		Subcommands: []*cli.Command{
			imageCreateCommand(),
			kindGetCommand(resource.KindImage, `Shows an image: the columns of 'kumoi image list', its checksum and size,
then its state on each host that fetched it (ready, pending, failed with the
reason, e.g. a checksum mismatch).`),
			kindListCommand(resource.KindImage, `Lists images sorted by name. SOURCE is the file name or URL; HOSTS is how
many hosts hold the image ready, of those that report it.`),
			kindDeleteCommand(resource.KindImage, "An image that volumes or VM disks name is refused, naming them."),
		},
	}
}

func imageCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "create",
		Usage:     "add an image to the catalog",
		UsageText: "kumoi image create NAME (--file NAME | --url URL) [--format qcow2|raw] [--sha256 HEX] [--size BYTES] [--label KEY=VALUE]...",
		Description: `Adds an image. --file names a file in every worker's image directory (or an
absolute path inside it); --url is an http or https URL the workers download
from, and needs --sha256. With --sha256 (64 hex digits) a worker verifies
the file before any VM uses it; with --size it also checks the size in bytes.

Examples:
   kumoi image create debian --file debian-12.qcow2 --sha256 9f86d0…
   kumoi image create alpine --url https://example.com/alpine.qcow2 --sha256 2c26b4… --size 52428800
   kumoi image create scratch --file scratch.img --format raw`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Usage: "the image file `NAME` in the workers' image directory"},
			&cli.StringFlag{Name: "url", Usage: "an http or https `URL` to download the image from"},
			&cli.StringFlag{Name: "format", Usage: "`FORMAT`: qcow2 or raw (default: qcow2)"},
			&cli.StringFlag{Name: "sha256", Usage: "the image's SHA-256 `HEX` (required with --url)"},
			&cli.StringFlag{Name: "size", Usage: "the image's exact size in `BYTES` (a number, or with a unit: 2GiB)"},
			labelFlag("a label `KEY=VALUE`; repeat for several"),
		},
		Action: imageCreate,
	})
}

func imageCreate(c *cli.Context) error {
	name, err := newName(c, "image")
	if err != nil {
		return err
	}
	switch {
	case !c.IsSet("file") && !c.IsSet("url"):
		return usagef("missing --file or --url: say where the image comes from, e.g. kumoi image create %s --file %s.qcow2", name, name)
	case c.IsSet("file") && c.IsSet("url"):
		return usagef("--file and --url contradict each other: an image comes from one place")
	}
	spec := map[string]any{"format": resource.FormatQCOW2}
	if c.IsSet("format") {
		if err := checkChoice("format", c.String("format"), resource.FormatQCOW2, resource.FormatRaw); err != nil {
			return err
		}
		spec["format"] = c.String("format")
	}
	if c.IsSet("file") {
		f := c.String("file")
		if f == "" || strings.Contains("/"+f+"/", "/../") {
			return usagef("invalid --file %q: give a name in the workers' image directory (--image-dir), e.g. debian.qcow2", f)
		}
		spec["file"] = f
	}
	if c.IsSet("url") {
		if !c.IsSet("sha256") {
			return usagef("--url needs --sha256: the workers verify what they download against it")
		}
		spec["url"] = c.String("url")
	}
	if c.IsSet("sha256") {
		spec["sha256"] = c.String("sha256")
	}
	if c.IsSet("size") {
		n, err := parseBytes(c.String("size"))
		if err != nil {
			return err
		}
		spec["size_bytes"] = n
	}
	return createKind(c, resource.KindImage, name, spec)
}

// parseBytes parses --size of an image: a number of bytes, or a size
// with a unit (2GiB).
func parseBytes(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 1 {
			return 0, usagef("invalid --size %q: give the image's size in bytes, e.g. --size 52428800", s)
		}
		return n, nil
	}
	mib, err := resource.ParseMemoryMiB(s)
	if err != nil || mib < 1 {
		return 0, usagef("invalid --size %q: give the image's size in bytes, e.g. --size 52428800, or with a unit, e.g. 2GiB", s)
	}
	return mib << 20, nil
}

func volumeCommand() *cli.Command {
	return &cli.Command{
		Name:      "volume",
		Aliases:   []string{"vol"},
		Usage:     "create, resize, attach and delete volumes",
		UsageText: "kumoi volume <create|get|list|resize|attach|detach|delete> [options] [NAME]",
		Description: `A volume is a qcow2 disk in a host's storage pool "kumoi": empty, or a
copy-on-write overlay on a cached image (--image). It is created on a host the
first time a VM using it is placed; from then on it lives on that host, and a
VM with it is placed there only. A persistent volume survives the delete of
the VM it is attached to; others are deleted with it. A volume is attached to
at most one VM, and only while that VM is stopped.

Examples:
   kumoi volume create v1 --size 1GiB --image debian --persistent
   kumoi volume attach v1 web
   kumoi volume resize v1 --size 2GiB
   kumoi volume detach v1
   kumoi volume list
   kumoi volume delete v1`,
		Subcommands: []*cli.Command{
			volumeCreateCommand(),
			kindGetCommand(resource.KindVolume, `Shows a volume: the columns of 'kumoi volume list', the whole reason, and
the size of its disk as the host last reported it.`),
			kindListCommand(resource.KindVolume, `Lists volumes sorted by name. PHASE is pending (not on a host yet), ready,
missing (removed behind Kumoi's back: its data is gone) or failed; HOST holds
it; ATTACHED is the VM whose disk it is.`),
			volumeResizeCommand(),
			volumeAttachCommand(),
			volumeDetachCommand(),
			kindDeleteCommand(resource.KindVolume, "A volume attached to a VM is refused: detach it first ('kumoi volume detach NAME')."),
		},
	}
}

func volumeCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "create",
		Usage:     "create a volume",
		UsageText: "kumoi volume create NAME --size SIZE [--image IMAGE] [--persistent] [--project NAME] [--label KEY=VALUE]...",
		Description: `Creates a volume. SIZE is a number with an optional unit: 512MiB, 2GiB, 1TiB
(a bare number means MiB). With --image the volume starts as that image (its
size must be at least the image's virtual size).

Examples:
   kumoi volume create data --size 10GiB --persistent
   kumoi volume create root --size 2GiB --image debian`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Usage: "the disk's `SIZE`, e.g. 1GiB (required)"},
			&cli.StringFlag{Name: "image", Usage: "start as the image `IMAGE` (a copy-on-write overlay)"},
			&cli.BoolFlag{Name: "persistent", Usage: "keep the volume when the VM it is attached to is deleted"},
			&cli.StringFlag{Name: "project", Usage: "count the volume against the project `NAME` (default: default)"},
			labelFlag("a label `KEY=VALUE`; repeat for several"),
		},
		Action: func(c *cli.Context) error {
			name, err := newName(c, "volume")
			if err != nil {
				return err
			}
			if !c.IsSet("size") {
				return usagef("missing --size: say how big the volume is, e.g. kumoi volume create %s --size 1GiB", name)
			}
			mib, err := parseMemory("size", c.String("size"))
			if err != nil {
				return err
			}
			spec := map[string]any{"size_mib": mib}
			if c.IsSet("image") {
				if err := resource.ValidateName(c.String("image")); err != nil {
					return usagef("invalid --image: %s", fieldMsg(err))
				}
				spec["image"] = c.String("image")
			}
			if c.Bool("persistent") {
				spec["persistent"] = true
			}
			if c.IsSet("project") {
				if err := resource.ValidateName(c.String("project")); err != nil {
					return usagef("invalid --project: %s", fieldMsg(err))
				}
				spec["project"] = c.String("project")
			}
			return createKind(c, resource.KindVolume, name, spec)
		},
	})
}

func volumeResizeCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "resize",
		Usage:     "grow a volume",
		UsageText: "kumoi volume resize NAME --size SIZE",
		Description: `Sets the volume's size (a read-modify-write with compare-and-set, retried
when the volume changed in between). A volume only grows: a smaller size is
refused. The VM it is attached to must be stopped; its worker grows the disk
(the guest grows its file system itself).

Examples:
   kumoi volume resize v1 --size 2GiB`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "size", Usage: "the new `SIZE`, e.g. 2GiB (required)"}},
		Action: func(c *cli.Context) error {
			name, err := oneName(c, "volume")
			if err != nil {
				return err
			}
			if !c.IsSet("size") {
				return usagef("missing --size: say how big the volume is to be, e.g. kumoi volume resize %s --size 2GiB", name)
			}
			mib, err := parseMemory("size", c.String("size"))
			if err != nil {
				return err
			}
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			v, err := s.client.Volumes().Resize(s.ctx, name, mib)
			if err != nil {
				return s.fail(casRetryErr(resource.KindVolume, name, err))
			}
			return printObject(c, v.Object)
		},
	})
}

// casRetryErr words an error of a read-modify-write loop.
func casRetryErr(kind resource.Kind, name string, err error) error {
	if errors.Is(err, client.ErrCASMismatch) {
		return fmt.Errorf("%s %q kept changing while it was being updated (%d attempts), so nothing was written; run the command again", kind, name, client.ModifyAttempts)
	}
	return objectErr(kind, name, err)
}

func volumeAttachCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "attach",
		Usage:     "attach a volume to a stopped VM",
		UsageText: "kumoi volume attach VOLUME VM",
		Description: `Adds the volume as the VM's last disk (a read-modify-write of the VM's spec
with compare-and-set, retried when the VM changed in between). The VM must be
stopped (or not placed yet), and the volume attached to no other VM. With -o
json or -o yaml the VM is printed.

Examples:
   kumoi volume attach v1 web`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef("give the volume and the VM: %s", c.Command.UsageText)
			}
			vol, vm := c.Args().Get(0), c.Args().Get(1)
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			x, err := s.client.AttachVolume(s.ctx, vol, vm)
			if err != nil {
				if client.IsNotFound(err) {
					return s.fail(notFoundOf(s, vol, vm))
				}
				return s.fail(casRetryErr(resource.KindVM, vm, err))
			}
			return printDone(c, x.Object, fmt.Sprintf("volume %q attached to vm %q as disk %d\n", vol, vm, len(x.Spec.Disks)-1))
		},
	})
}

// notFoundOf says which of a volume and a VM does not exist.
func notFoundOf(s *session, vol, vm string) error {
	if _, _, err := s.client.Get(s.ctx, resource.KindVolume, vol, nil); client.IsNotFound(err) {
		return fmt.Errorf("volume %q not found", vol)
	}
	return fmt.Errorf("vm %q not found", vm)
}

func volumeDetachCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "detach",
		Usage:     "detach a volume from its VM",
		UsageText: "kumoi volume detach VOLUME",
		Description: `Removes the volume from the disks of the VM it is attached to (a
read-modify-write with compare-and-set). The VM must be stopped. The volume
stays on its host, ready to be attached again. With -o json or -o yaml the
VM is printed.

Examples:
   kumoi volume detach v1`,
		Action: func(c *cli.Context) error {
			vol, s, err := connectNamed(c, "volume")
			if err != nil {
				return err
			}
			defer s.close()
			x, err := s.client.DetachVolume(s.ctx, vol)
			switch {
			case errors.Is(err, client.ErrNotAttached):
				return fmt.Errorf("volume %q is not attached to any VM", vol)
			case err != nil:
				return s.fail(casRetryErr(resource.KindVolume, vol, err))
			}
			return printDone(c, x.Object, fmt.Sprintf("volume %q detached from vm %q\n", vol, x.Name()))
		},
	})
}

// printDone prints o with -o json or yaml, else the message.
func printDone(c *cli.Context, o *resource.Object, msg string) error {
	if done, err := printData(c, o); done {
		return err
	}
	_, err := io.WriteString(writer(c), msg)
	return err
}

// imageTable: NAME FORMAT SOURCE SHA256 HOSTS INDEX.
func imageTable(w io.Writer, objs []*resource.Object) error {
	t := newTable(w, "NAME", "FORMAT", "SOURCE", "SHA256", "HOSTS", "INDEX")
	for _, o := range objs {
		spec, st := resource.StateOf[resource.ImageSpec, resource.ImageStatus](o)
		src := spec.File
		if spec.URL != "" {
			src = spec.URL
		}
		sum := spec.SHA256
		if len(sum) > 12 {
			sum = sum[:12] + "…"
		}
		t.row(o.Name, spec.Format, src, sum, hostsReady(st.Hosts), uintCell(o.ModifyIndex))
	}
	return t.flush()
}

// volumeTable: NAME SIZE IMAGE PERSISTENT PHASE HOST ATTACHED INDEX REASON.
func volumeTable(w io.Writer, objs []*resource.Object, width int) error {
	t := newFreeTextTable(w, "NAME", "SIZE", "IMAGE", "PERSISTENT", "PHASE", "HOST", "ATTACHED", "INDEX", "REASON")
	for _, o := range objs {
		spec, st := resource.StateOf[resource.VolumeSpec, resource.VolumeStatus](o)
		reason := st.Reason
		if width > 0 {
			reason = shorten(reason, width)
		}
		t.row(o.Name, resource.FormatMiB(spec.SizeMiB), spec.Image, boolCell(spec.Persistent), st.Phase, st.Host, st.AttachedTo,
			uintCell(o.ModifyIndex), reason)
	}
	return t.flush()
}
