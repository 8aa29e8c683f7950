package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// Defaults of image fetching.
const (
	// DefaultStorageDir is the storage directory of a worker started by
	// the CLI without --storage-dir.
	DefaultStorageDir = "/var/lib/kumoi/storage"
	// DefaultImageFetchTimeout bounds one image download (or the hashing
	// of a file image).
	DefaultImageFetchTimeout = 30 * time.Minute
	// DefaultImageMaxBytes bounds an image download whose spec gives no
	// size_bytes (64 GiB).
	DefaultImageMaxBytes int64 = 64 << 30
	// imageRetry is how long a fetch that failed for a reason that may
	// pass (a network error, an HTTP error) waits before it is tried
	// again.
	imageRetry = 30 * time.Second
)

// imageCache fetches the images the volumes of this host's VMs start from
// into <storage dir>/images, verifies them (sha256, size_bytes) and
// remembers what it verified, so that a pass does not hash again a file
// that has not changed. Fetches run in the background (an image may take
// minutes to download, and a pass must never be held up that long: it is
// what fences the host); the reconcile loop is kicked when one ends.
type imageCache struct {
	dir      string // <storage dir>/images
	imageDir hypervisor.ImageDir
	http     *http.Client
	timeout  time.Duration
	maxBytes int64
	logger   hclog.Logger
	kick     func()

	mu   sync.Mutex
	jobs map[string]*imageJob // by image id (images are immutable)
	// hashes counts the files hashed (tests).
	hashes atomic.Int64
}

// imageJob is the fetch of one image: running, or done with a verified
// file or an error.
type imageJob struct {
	running bool
	path    string // the verified file
	stamp   fileStamp
	err     error
	// permanent: the error will not pass by trying again (a checksum or
	// size mismatch, a file missing from the image directory, a
	// download over the bound): the VM fails.
	permanent bool
	at        time.Time // when it ended
	src       fileStamp // a file image's source when it was checked
	// got and total are a running download's bytes so far and its size
	// (0: not known), for the VM's reason while it waits.
	got, total atomic.Int64
}

// progress describes a running download, in tenths, so that the reason
// it goes into changes (and is reported) at most ten times: "40% of
// 300MiB", or "120MiB so far" when the size is not known ("" before the
// first byte).
func (j *imageJob) progress() string {
	got, total := j.got.Load(), j.total.Load()
	switch {
	case got == 0:
		return ""
	case total > 0:
		return fmt.Sprintf("%d%% of %s", min(got*10/total, 9)*10, resource.FormatMiB(max(total>>20, 1)))
	}
	// Steps of 64 MiB when the size is not known.
	return resource.FormatMiB((got>>26)<<6) + " so far"
}

// fileStamp tells whether a file changed since it was verified.
type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return fileStamp{}, false
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}, true
}

// imageState is an image's state on this host in one pass.
type imageState struct {
	state  string // HostResourceReady, HostResourcePending or HostResourceFailed
	path   string // ready: the verified file
	format hypervisor.ImageFormat
	err    error // failed: why
	// permanent: failed for good (the VM using it fails).
	permanent bool
	// progress of a pending download ("40% of 300MiB"; "" when unknown).
	progress string
}

// permanentError marks a fetch error that trying again will not mend.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(format string, args ...any) error {
	return permanentError{fmt.Errorf(format, args...)}
}

// lookup returns the image's state, starting (or restarting) its fetch
// when needed. ctx bounds the background fetch (the worker's life).
func (c *imageCache) lookup(ctx context.Context, o *resource.Object, spec *resource.ImageSpec) imageState {
	format := hypervisor.ImageFormat(spec.Format)
	if format == "" {
		format = hypervisor.ImageQCOW2
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[o.ID]
	switch {
	case j == nil:
	case j.running:
		return imageState{state: resource.HostResourcePending, format: format, progress: j.progress()}
	case j.err == nil:
		if st, ok := stampOf(j.path); ok && st == j.stamp {
			return imageState{state: resource.HostResourceReady, path: j.path, format: format}
		}
		// Changed or gone since it was verified: fetch (or verify) it
		// again.
	case j.permanent:
		// A file image that changed since it was checked is checked
		// again; anything else stays failed.
		if spec.File == "" || !c.fileChanged(spec.File, j.src) {
			return imageState{state: resource.HostResourceFailed, format: format, err: j.err, permanent: true}
		}
	case time.Since(j.at) < imageRetry:
		return imageState{state: resource.HostResourceFailed, format: format, err: j.err}
	}
	j = &imageJob{running: true}
	if c.jobs == nil {
		c.jobs = map[string]*imageJob{}
	}
	c.jobs[o.ID] = j
	name, id, s := o.Name, o.ID, *spec
	go func() {
		fctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		path, src, err := c.fetch(fctx, name, &s, j)
		stamp, _ := stampOf(path)
		var pe permanentError
		c.mu.Lock()
		j.running, j.path, j.stamp, j.err, j.permanent, j.at, j.src = false, path, stamp, err, errors.As(err, &pe), time.Now(), src
		c.mu.Unlock()
		if err != nil {
			c.logger.Warn("image fetch failed", "image", name, "id", id, "error", err)
		} else {
			c.logger.Info("image verified", "image", name, "id", id, "path", path)
		}
		if c.kick != nil {
			c.kick()
		}
	}()
	return imageState{state: resource.HostResourcePending, format: format}
}

// fileChanged: the file image's source differs from when it was checked.
func (c *imageCache) fileChanged(file string, was fileStamp) bool {
	real, err := c.imageDir.Resolve("file", file)
	if err != nil {
		return was != (fileStamp{})
	}
	st, _ := stampOf(real)
	return st != was
}

// fetch makes the image available and verified: a file image is used in
// place (in the image directory) once it verifies; a URL image is
// downloaded into the cache. It returns the file's path and, for a file
// image, its stamp when checked.
func (c *imageCache) fetch(ctx context.Context, name string, spec *resource.ImageSpec, j *imageJob) (string, fileStamp, error) {
	if spec.File != "" {
		real, err := c.imageDir.Resolve("file", spec.File)
		if err != nil {
			return "", fileStamp{}, permanent("image %s: %v", name, err)
		}
		src, _ := stampOf(real)
		if err := c.verifyFile(ctx, name, real, spec); err != nil {
			return "", src, err
		}
		return real, src, nil
	}
	return c.download(ctx, name, spec, j)
}

// verifyFile checks a file's size and sha256 against the spec's (those
// it gives).
func (c *imageCache) verifyFile(ctx context.Context, name, path string, spec *resource.ImageSpec) error {
	if spec.SHA256 == "" && spec.SizeBytes == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	defer f.Close()
	c.hashes.Add(1)
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return fmt.Errorf("image %s: reading %s: %w", name, path, err)
	}
	return checkImage(name, spec, n, h.Sum(nil))
}

// checkImage compares what was read with what the spec says.
func checkImage(name string, spec *resource.ImageSpec, n int64, sum []byte) error {
	if spec.SizeBytes != 0 && n != spec.SizeBytes {
		return permanent("image %s: size mismatch: want %d bytes, got %d", name, spec.SizeBytes, n)
	}
	if got := hex.EncodeToString(sum); spec.SHA256 != "" && got != spec.SHA256 {
		return permanent("image %s: sha256 mismatch: want %s, got %s", name, spec.SHA256, got)
	}
	return nil
}

// cachePath is where a URL image lives in the cache:
// <dir>/<sha256>.<format>.
func (c *imageCache) cachePath(spec *resource.ImageSpec) string {
	format := spec.Format
	if format == "" {
		format = resource.FormatQCOW2
	}
	return filepath.Join(c.dir, spec.SHA256+"."+format)
}

// download fetches a URL image into the cache: a cached file that
// verifies is used as is; otherwise the image is downloaded (at most
// size_bytes, or the cache's bound, within the fetch's deadline) into a
// temporary file, verified, and renamed into place.
func (c *imageCache) download(ctx context.Context, name string, spec *resource.ImageSpec, j *imageJob) (string, fileStamp, error) {
	if spec.SHA256 == "" {
		return "", fileStamp{}, permanent("image %s: a url image needs a sha256", name)
	}
	dest := c.cachePath(spec)
	if _, ok := stampOf(dest); ok {
		err := c.verifyFile(ctx, name, dest, spec)
		if err == nil {
			return dest, fileStamp{}, nil
		}
		if ctx.Err() != nil {
			return "", fileStamp{}, err
		}
		c.logger.Warn("a cached image does not verify; downloading it again", "image", name, "path", dest, "error", err)
		_ = os.Remove(dest)
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return "", fileStamp{}, fmt.Errorf("image %s: image cache: %w", name, err)
	}
	limit := c.maxBytes
	if spec.SizeBytes > 0 {
		limit = spec.SizeBytes
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.URL, nil)
	if err != nil {
		return "", fileStamp{}, permanent("image %s: %v", name, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fileStamp{}, fmt.Errorf("image %s: download: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fileStamp{}, fmt.Errorf("image %s: download %s: HTTP %s", name, spec.URL, resp.Status)
	}
	if resp.ContentLength > limit {
		return "", fileStamp{}, permanent("image %s: download %s: %d bytes is more than the bound of %d", name, spec.URL, resp.ContentLength, limit)
	}
	tmp, err := os.CreateTemp(c.dir, ".fetch-*")
	if err != nil {
		return "", fileStamp{}, fmt.Errorf("image %s: image cache: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	total := resp.ContentLength
	if spec.SizeBytes > 0 {
		total = spec.SizeBytes
	}
	j.total.Store(max(total, 0))
	n, err := io.Copy(io.MultiWriter(tmp, h, countWriter{&j.got}), io.LimitReader(resp.Body, limit+1))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fileStamp{}, fmt.Errorf("image %s: download %s: %w", name, spec.URL, err)
	}
	if n > limit {
		if spec.SizeBytes > 0 {
			return "", fileStamp{}, permanent("image %s: size mismatch: want %d bytes, got more", name, spec.SizeBytes)
		}
		return "", fileStamp{}, permanent("image %s: download %s: more than the bound of %d bytes", name, spec.URL, limit)
	}
	if err := checkImage(name, spec, n, h.Sum(nil)); err != nil {
		return "", fileStamp{}, err
	}
	// Readable by the hypervisor (QEMU runs as another user).
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fileStamp{}, fmt.Errorf("image %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return "", fileStamp{}, fmt.Errorf("image %s: image cache: %w", name, err)
	}
	if d, err := os.Open(c.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return dest, fileStamp{}, nil
}

// countWriter counts the bytes written through it.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// ctxReader stops a long read when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// newImageCache is the cache of a worker configured by cfg (validated).
func newImageCache(cfg *Config, logger hclog.Logger, kick func()) *imageCache {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	return &imageCache{
		dir:      filepath.Join(cfg.StorageDir, "images"),
		imageDir: cfg.imageDir,
		http:     &http.Client{Transport: tr},
		timeout:  cfg.ImageFetchTimeout,
		maxBytes: cfg.ImageMaxBytes,
		logger:   logger,
		kick:     kick,
		jobs:     map[string]*imageJob{},
	}
}
