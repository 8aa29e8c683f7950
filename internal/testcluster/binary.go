package testcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
	root, err := moduleRoot()
	if err != nil {
		build.err = err
		return
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
			goBin = p
		} else {
			goBin = "/usr/local/go/bin/go"
		}
	}
	dir, err := os.MkdirTemp("", "kumoi-testcluster-bin-")
	if err != nil {
		build.err = err
		return
	}
	bin := filepath.Join(dir, "kumoi")
	cmd := exec.Command(goBin, "build", "-tags", "libvirt_dlopen", "-o", bin, "./cmd/kumoi")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		build.err = fmt.Errorf("cannot build the kumoi binary (go build -tags libvirt_dlopen ./cmd/kumoi in %s): %v\n%s", root, err, strings.TrimSpace(out.String()))
		return
	}
	build.dir, build.bin = dir, bin
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
	os.Exit(code)
}
