package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// diskCommits is how many commits each writer of BenchmarkDiskCommit makes
// per iteration (make bench runs one).
const diskCommits = 300

// BenchmarkDiskCommit measures what making a write durable costs on this
// machine's disk, the floor under every Raft append: a 4 KiB write then
// one fdatasync (a write-ahead log's append, as etcd's WAL does it) or a
// 4 KiB write, fdatasync, a 64-byte write, fdatasync (a BoltDB commit: its
// pages, then its meta page, as raft-boltdb's StoreLogs does it), by one
// writer, or by three at once on the same disk (three controllers, or three
// etcd members, on one machine, as in make bench-compare). It reports the
// mean time of one commit in µs/commit. docs/benchmarks.md uses it to
// explain the latency rows of make bench-compare.
func BenchmarkDiskCommit(b *testing.B) {
	for _, writers := range []int{1, 3} {
		for _, syncs := range []int{1, 2} {
			b.Run(fmt.Sprintf("writers=%d/syncs=%d", writers, syncs), func(b *testing.B) {
				dir := b.TempDir()
				var total time.Duration
				var n int
				for range b.N {
					var mu sync.Mutex
					var wg sync.WaitGroup
					errs := make(chan error, writers)
					for w := range writers {
						wg.Go(func() {
							d, err := diskCommitRun(filepath.Join(dir, fmt.Sprintf("w%d", w)), syncs)
							if err != nil {
								errs <- err
								return
							}
							mu.Lock()
							total += d
							n += diskCommits
							mu.Unlock()
						})
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(total.Microseconds())/float64(n), "µs/commit")
			})
		}
	}
}

// diskCommitRun makes diskCommits commits into a fresh file at path and
// returns the time they took, each one measured from its first write to
// its last sync.
func diskCommitRun(path string, syncs int) (time.Duration, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	// Written once and synced, so that the commits overwrite allocated
	// blocks (as a log store's file does once it has grown).
	if _, err := f.Write(make([]byte, (diskCommits+1)*4096)); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	page := make([]byte, 4096)
	fd := int(f.Fd())
	var total time.Duration
	for i := range diskCommits {
		start := time.Now()
		if _, err := f.WriteAt(page, int64(i+1)*4096); err != nil {
			return 0, err
		}
		if err := syscall.Fdatasync(fd); err != nil {
			return 0, err
		}
		if syncs == 2 {
			if _, err := f.WriteAt(page[:64], 0); err != nil {
				return 0, err
			}
			if err := syscall.Fdatasync(fd); err != nil {
				return 0, err
			}
		}
		total += time.Since(start)
	}
	return total, nil
}
