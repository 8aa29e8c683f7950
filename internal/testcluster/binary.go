package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ModulePath is the module whose cmd/kumoi is built when no binary is given.
const ModulePath = "github.com/kumoi/kumoi"

var build struct {
	once sync.Once
	dir  string // temporary directory holding the built binary
	bin  string
	err  error
}

// Binary returns the kumoi binary to run: bin if not empty, else
// $KUMOI_BIN, else one built (once per test process) from the module root.
// When there is none it skips the test, or fails it under CI.
func Binary(tb testing.TB, bin string) string {
	tb.Helper()
	if bin == "" {
		bin = os.Getenv("KUMOI_BIN")
	}
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err == nil {
			bin = abs
		}
		if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing(tb, fmt.Sprintf("kumoi binary %q (from Options.Bin or KUMOI_BIN) is not an executable file (run `make build`)", bin))
		}
		return bin
	}
	build.once.Do(buildBinary)
	if build.err != nil {
		missing(tb, build.err.Error())
	}
	return build.bin
}

func missing(tb testing.TB, msg string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s; under CI this is a failure, not a skip", msg)
	}
	tb.Skipf("%s; skipping (set KUMOI_BIN or fix the build; under CI this fails)", msg)
}

func buildBinary() {
	dir, err := os.MkdirTemp("", "kumoi-testcluster-bin-")
	if err != nil {
		build.err = err
		return
	}
	bin := filepath.Join(dir, "kumoi")
	if err := goBuild(context.Background(), bin, "libvirt_dlopen"); err != nil {
		os.RemoveAll(dir)
		build.err = err
		return
	}
	build.dir, build.bin = dir, bin
}

// TestHooksTag is the build tag that compiles the agent's fault hooks
// (hidden flags such as --debug-unsafe-stale-reads that break a controller
// on purpose) into kumoi. The release binary (make build) has none; `make
// jepsen-selftest` builds bin/kumoi-testhooks with it.
const TestHooksTag = "kumoi_testhooks"

// TestHooksBinary builds a kumoi binary with the fault hooks (go build
// -tags 'libvirt_dlopen kumoi_testhooks' ./cmd/kumoi) in a temporary
// directory of tb and returns its path: a few seconds when the build cache
// is warm from make build, since only the cli package and the link differ.
// When it cannot be built the test is skipped, except under CI, where that
// is a failure.
func TestHooksBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "kumoi-testhooks")
	ctx, cancel := context.WithTimeout(context.Background(), Stretch(5*time.Minute))
	defer cancel()
	if err := goBuild(ctx, bin, "libvirt_dlopen "+TestHooksTag); err != nil {
		missing(tb, err.Error())
	}
	return bin
}

// goBuild builds ./cmd/kumoi of the module root with tags into bin.
func goBuild(ctx context.Context, bin, tags string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
			goBin = p
		} else {
			goBin = "/usr/local/go/bin/go"
		}
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", tags, "-o", bin, "./cmd/kumoi")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cannot build the kumoi binary (go build -tags '%s' ./cmd/kumoi in %s): %v\n%s", tags, root, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// moduleRoot walks up from the working directory to the go.mod of
// ModulePath.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+ModulePath)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the go.mod of " + ModulePath + " above the working directory; set KUMOI_BIN")
		}
		dir = parent
	}
}

// Main runs the tests of a package that uses this package and removes the
// binary built for them. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testcluster.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	RemoveCA()
	os.Exit(code)
}

// Tool finds a command a test needs (from Debian package pkg, which make
// deps installs): missing, the test fails under CI and is skipped
// elsewhere.
func Tool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(tb, fmt.Sprintf("%s not found (Debian package %s; make deps installs it)", name, pkg))
	}
	return p
}
