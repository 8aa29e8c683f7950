package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

type testImage struct{ path, sha string }

func writeImage(t *testing.T, dir, name, content string) testImage {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return testImage{path: real, sha: hex.EncodeToString(sha256Sum(content))}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		<-time.After(5 * time.Millisecond)
	}
}

// newTestCache is an image cache over a fresh image directory and
// storage directory.
func newTestCache(t *testing.T, timeout time.Duration, maxBytes int64) (*imageCache, string) {
	t.Helper()
	imgDir := t.TempDir()
	cfg := Config{ImageDir: imgDir, StorageDir: t.TempDir(), ImageFetchTimeout: timeout, ImageMaxBytes: maxBytes}
	cfg.imageDir, _ = hypervisor.NewImageDir(imgDir)
	if cfg.ImageFetchTimeout == 0 {
		cfg.ImageFetchTimeout = DefaultImageFetchTimeout
	}
	if cfg.ImageMaxBytes == 0 {
		cfg.ImageMaxBytes = DefaultImageMaxBytes
	}
	return newImageCache(&cfg, hclog.NewNullLogger(), nil), imgDir
}

// settle looks the image up until its fetch has ended.
func settle(t *testing.T, c *imageCache, o *resource.Object, spec *resource.ImageSpec) imageState {
	t.Helper()
	var is imageState
	waitFor(t, func() bool {
		is = c.lookup(context.Background(), o, spec)
		return is.state != resource.HostResourcePending
	})
	return is
}

func imageObj(name string) *resource.Object {
	return &resource.Object{Kind: resource.KindImage, Name: name, ID: "id-" + name}
}

// serve serves content on 127.0.0.1 and counts the requests.
func serve(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestImageFileVerified(t *testing.T) {
	c, imgDir := newTestCache(t, 0, 0)
	img := writeImage(t, imgDir, "debian.qcow2", "disk bytes")
	spec := &resource.ImageSpec{Format: "qcow2", File: "debian.qcow2", SHA256: img.sha, SizeBytes: 10}
	is := settle(t, c, imageObj("debian"), spec)
	if is.state != resource.HostResourceReady || is.path != img.path || is.format != hypervisor.ImageQCOW2 {
		t.Fatalf("file image: %+v, want ready in place at %s", is, img.path)
	}
	for range 5 {
		if is := c.lookup(context.Background(), imageObj("debian"), spec); is.state != resource.HostResourceReady {
			t.Fatalf("lookup again: %+v", is)
		}
	}
	if n := c.hashes.Load(); n != 1 {
		t.Fatalf("hashed %d times; a verified file is hashed once", n)
	}
	// Replaced by a file that does not match: checked again, and fails.
	bad := writeImage(t, imgDir, "debian.qcow2", "disk BYTES") // same size
	os.Chtimes(bad.path, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	is = settle(t, c, imageObj("debian"), spec)
	want := "image debian: sha256 mismatch: want " + img.sha + ", got " + bad.sha
	if is.state != resource.HostResourceFailed || !is.permanent || is.err.Error() != want {
		t.Fatalf("changed file: %+v, want failed: %s", is, want)
	}
	// Size mismatch.
	writeImage(t, imgDir, "short.raw", "abc")
	is = settle(t, c, imageObj("short"), &resource.ImageSpec{Format: "raw", File: "short.raw", SizeBytes: 4})
	if is.state != resource.HostResourceFailed || is.err.Error() != "image short: size mismatch: want 4 bytes, got 3" {
		t.Fatalf("size mismatch: %+v", is)
	}
	// Missing, or outside the image directory.
	is = settle(t, c, imageObj("nope"), &resource.ImageSpec{Format: "raw", File: "nope.raw"})
	if is.state != resource.HostResourceFailed || !is.permanent || !strings.Contains(is.err.Error(), "does not exist") {
		t.Fatalf("missing file: %+v", is)
	}
	// No checksum: used as is, not hashed.
	writeImage(t, imgDir, "plain.raw", "x")
	if is = settle(t, c, imageObj("plain"), &resource.ImageSpec{Format: "raw", File: "plain.raw"}); is.state != resource.HostResourceReady || is.format != hypervisor.ImageRaw {
		t.Fatalf("unverified file image: %+v", is)
	}
}

func TestImageURLFetched(t *testing.T) {
	content := strings.Repeat("qcow2 image bytes ", 1000)
	sum := hex.EncodeToString(sha256Sum(content))
	srv, hits := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debian.qcow2" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.Write([]byte(content))
	})
	c, _ := newTestCache(t, 0, 0)
	spec := &resource.ImageSpec{Format: "qcow2", URL: srv.URL + "/debian.qcow2", SHA256: sum, SizeBytes: int64(len(content))}
	is := settle(t, c, imageObj("debian"), spec)
	want := filepath.Join(c.dir, sum+".qcow2")
	if is.state != resource.HostResourceReady || is.path != want {
		t.Fatalf("url image: %+v, want ready at %s", is, want)
	}
	if b, err := os.ReadFile(want); err != nil || string(b) != content {
		t.Fatalf("cached file: %v", err)
	}
	if fi, _ := os.Stat(want); fi.Mode().Perm() != 0o644 {
		t.Fatalf("cached file mode %v, want 0644 (QEMU reads it)", fi.Mode())
	}
	for range 3 {
		c.lookup(context.Background(), imageObj("debian"), spec)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads; want 1", hits.Load())
	}
	// A restarted worker verifies the cached file once, downloads
	// nothing.
	c2 := newImageCache(&Config{StorageDir: filepath.Dir(c.dir), ImageFetchTimeout: time.Minute, ImageMaxBytes: 1 << 20}, hclog.NewNullLogger(), nil)
	if is := settle(t, c2, imageObj("debian"), spec); is.state != resource.HostResourceReady || hits.Load() != 1 || c2.hashes.Load() != 1 {
		t.Fatalf("restarted: %+v, %d downloads, %d hashes", is, hits.Load(), c2.hashes.Load())
	}

	// Checksum mismatch: failed for good, nothing left in the cache.
	wrong := strings.Repeat("0", 64)
	bad := &resource.ImageSpec{Format: "qcow2", URL: srv.URL + "/debian.qcow2", SHA256: wrong}
	is = settle(t, c, imageObj("bad"), bad)
	if is.state != resource.HostResourceFailed || !is.permanent || is.err.Error() != "image bad: sha256 mismatch: want "+wrong+", got "+sum {
		t.Fatalf("mismatch: %+v", is)
	}
	ents, _ := os.ReadDir(c.dir)
	if len(ents) != 1 {
		t.Fatalf("cache holds %d files after a mismatch; want only the good image", len(ents))
	}
	// Larger than size_bytes, or than the bound.
	short := &resource.ImageSpec{Format: "qcow2", URL: srv.URL + "/debian.qcow2", SHA256: sum, SizeBytes: 100}
	if is = settle(t, c, imageObj("short"), short); is.state != resource.HostResourceFailed || !is.permanent || !strings.Contains(is.err.Error(), "more than the bound of 100") {
		t.Fatalf("over size_bytes: %+v", is)
	}
	small, _ := newTestCache(t, 0, 1000)
	if is = settle(t, small, imageObj("big"), &resource.ImageSpec{Format: "qcow2", URL: srv.URL + "/debian.qcow2", SHA256: sum}); is.state != resource.HostResourceFailed || !strings.Contains(is.err.Error(), "bound of 1000") {
		t.Fatalf("over the cache's bound: %+v", is)
	}
	// An HTTP error may pass: failed, not for good.
	if is = settle(t, c, imageObj("missing"), &resource.ImageSpec{Format: "qcow2", URL: srv.URL + "/nope", SHA256: sum}); is.state != resource.HostResourceFailed || is.permanent || !strings.Contains(is.err.Error(), "404") {
		t.Fatalf("404: %+v", is)
	}
}

func TestImageURLUnboundedStream(t *testing.T) {
	// A server that streams without a length, more than the bound, and
	// one that never ends: both cut.
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 4096))
		for i := 0; r.URL.Path == "/slow" || i < 1000; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if r.URL.Path == "/slow" {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	})
	c, _ := newTestCache(t, 300*time.Millisecond, 64<<10)
	sum := strings.Repeat("1", 64)
	if is := settle(t, c, imageObj("big"), &resource.ImageSpec{Format: "raw", URL: srv.URL + "/big", SHA256: sum}); is.state != resource.HostResourceFailed || !strings.Contains(is.err.Error(), "more than the bound") {
		t.Fatalf("stream over the bound: %+v", is)
	}
	c2, _ := newTestCache(t, 300*time.Millisecond, 1<<30)
	is := settle(t, c2, imageObj("slow"), &resource.ImageSpec{Format: "raw", URL: srv.URL + "/slow", SHA256: sum})
	if is.state != resource.HostResourceFailed || is.permanent || !strings.Contains(is.err.Error(), "deadline") {
		t.Fatalf("a download over the timeout: %+v", is)
	}
	ents, _ := os.ReadDir(c2.dir)
	if len(ents) != 0 {
		t.Fatalf("a cut download left %d files", len(ents))
	}
}

func TestImageHTTPS(t *testing.T) {
	content := "an image over https"
	sum := hex.EncodeToString(sha256Sum(content))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(content)) }))
	srv.Listener.Close()
	srv.Listener = l
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, _ := newTestCache(t, 0, 0)
	spec := &resource.ImageSpec{Format: "raw", URL: srv.URL + "/img", SHA256: sum}
	// A certificate the host does not trust: failed, and tried again
	// later.
	if is := settle(t, c, imageObj("tls"), spec); is.state != resource.HostResourceFailed || is.permanent || !strings.Contains(is.err.Error(), "certificate") {
		t.Fatalf("untrusted certificate: %+v", is)
	}
	c2, _ := newTestCache(t, 0, 0)
	c2.http = srv.Client() // trusts the test server's certificate
	if is := settle(t, c2, imageObj("tls"), spec); is.state != resource.HostResourceReady || is.format != hypervisor.ImageRaw {
		t.Fatalf("https image: %+v", is)
	}
}

// TestImageFetchProgress: while a download runs, the image's state says
// how far it is, in tenths of its size (the VM's reason shows it; kumoi
// vm create --wait redraws it), or in 64 MiB steps when its size is not
// known.
func TestImageFetchProgress(t *testing.T) {
	const size = 1 << 20
	content := strings.Repeat("x", size)
	sum := hex.EncodeToString(sha256Sum(content))
	release := make(chan struct{})
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write([]byte(content[:size*45/100])) // 45%
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte(content[size*45/100:]))
	})
	c, _ := newTestCache(t, 0, 0)
	spec := &resource.ImageSpec{Format: "qcow2", URL: srv.URL + "/big.qcow2", SHA256: sum}
	var is imageState
	waitFor(t, func() bool {
		is = c.lookup(context.Background(), imageObj("big"), spec)
		return is.progress == "40% of 1MiB"
	})
	if is.state != resource.HostResourcePending {
		t.Fatalf("during the download: %+v", is)
	}
	close(release)
	if is = settle(t, c, imageObj("big"), spec); is.state != resource.HostResourceReady || is.progress != "" {
		t.Fatalf("after the download: %+v", is)
	}

	var j imageJob
	for _, tc := range []struct {
		got, total int64
		want       string
	}{{0, 100, ""}, {99, 100, "90% of 1MiB"}, {1 << 30, 4 << 30, "20% of 4GiB"}, {200 << 20, 0, "192MiB so far"}} {
		j.got.Store(tc.got)
		j.total.Store(tc.total)
		if got := j.progress(); got != tc.want {
			t.Errorf("progress(%d of %d) = %q, want %q", tc.got, tc.total, got, tc.want)
		}
	}
}
