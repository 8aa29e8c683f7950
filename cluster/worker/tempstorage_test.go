package worker

import (
	"context"
	"net"
	"os"
	"testing"
	"time"
)

// freeTCPPort is a port nobody listens on at 127.0.0.1 (now).
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestTempStorageRemoved: a worker given neither a storage directory nor
// a data directory (embedded in tests) makes a private temporary one and
// removes it when it stops, by Shutdown or by Kill (they had piled up in
// /tmp, one per worker started).
func TestTempStorageRemoved(t *testing.T) {
	for _, stop := range []string{"shutdown", "kill"} {
		t.Run(stop, func(t *testing.T) {
			drv := newFakeStore(t)
			t.Cleanup(func() { drv.Close() })
			cfg := Config{NodeID: "hv-tmp", Driver: drv, ImageDir: t.TempDir(), BindIP: "127.0.0.1", GossipPort: freeTCPPort(t)}
			w, err := Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			dir := w.cfg.StorageDir
			if st, err := os.Stat(dir); err != nil || !st.IsDir() || !w.cfg.tempStorage {
				t.Fatalf("storage directory %q: %v (temporary: %t)", dir, err, w.cfg.tempStorage)
			}
			if stop == "kill" {
				w.Kill()
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = w.Shutdown(ctx) // leaving a pool it may not have joined
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("after %s, the temporary storage directory %q is still there (%v)", stop, dir, err)
			}
		})
	}
	// One that was given its storage directory keeps it.
	drv := newFakeStore(t)
	t.Cleanup(func() { drv.Close() })
	keep := t.TempDir()
	w, err := Start(Config{NodeID: "hv-keep", Driver: drv, ImageDir: t.TempDir(), StorageDir: keep, BindIP: "127.0.0.1", GossipPort: freeTCPPort(t)})
	if err != nil {
		t.Fatal(err)
	}
	w.Kill()
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("a worker removed the storage directory it was given: %v", err)
	}
}
