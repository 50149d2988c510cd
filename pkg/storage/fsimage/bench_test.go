package fsimage

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

const benchVolumes = 300

// createMany creates n XFS volumes, parallel (mkfs, attach and mount wait
// mostly on the kernel and the disk, not the CPU).
func createMany(b *testing.B, be *Backend, prefix string, n int) {
	b.Helper()
	ctx := testContext(b)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if _, _, err := be.Create(ctx, storage.Spec{Name: fmt.Sprintf("%s%03d", prefix, i), Kind: storage.XFS, Size: 1, Mode: 0o777}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func removeAll(b *testing.B, be *Backend) {
	b.Helper()
	ctx := testContext(b)
	names, err := be.List(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range names {
		if err := be.Remove(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreate300XFS: 300 XFS volumes created (8 at a time) until all
// are mounted. Reported: ms per volume and seconds for the 300.
func BenchmarkCreate300XFS(b *testing.B) {
	be, _ := newTestBackend(b, "")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		createMany(b, be, "v", benchVolumes)
		total += time.Since(t0)
		b.StopTimer()
		removeAll(b, be)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N*benchVolumes), "ms/volume")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/300")
}

// BenchmarkOpen300AfterRestart: 300 XFS volumes, then a new backend (as a
// restarted provisioner) opens them all. "after-kill": the mounts
// survived the process (Open finds and reuses them); "after-reboot": they
// were all closed (Open attaches, and mounts each).
func BenchmarkOpen300AfterRestart(b *testing.B) {
	for _, closed := range []bool{false, true} {
		name := "after-kill"
		if closed {
			name = "after-reboot"
		}
		b.Run(name, func(b *testing.B) {
			be, store := newTestBackend(b, "")
			createMany(b, be, "v", benchVolumes)
			ctx := testContext(b)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if closed {
					names, _ := be.List(ctx)
					for _, n := range names {
						if err := be.Close(ctx, n); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StartTimer()
				t0 := time.Now()
				fresh, err := New(ctx, storeOptions(store))
				if err != nil {
					b.Fatal(err)
				}
				names, err := fresh.List(ctx)
				if err != nil || len(names) != benchVolumes {
					b.Fatalf("List: %d names, %v", len(names), err)
				}
				sem := make(chan struct{}, 8)
				var wg sync.WaitGroup
				for _, n := range names {
					wg.Add(1)
					sem <- struct{}{}
					go func(n string) {
						defer wg.Done()
						defer func() { <-sem }()
						if _, err := fresh.Open(ctx, n); err != nil {
							b.Error(err)
						}
					}(n)
				}
				wg.Wait()
				total += time.Since(t0)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/300")
			b.StopTimer()
			removeAll(b, be)
		})
	}
}

// BenchmarkCloneReflink1GiB: a 1 GiB XFS volume holding 512 MiB, cloned
// on a store with reflink (freeze, FICLONE, thaw, new UUID, mount).
func BenchmarkCloneReflink1GiB(b *testing.B) {
	be, _ := newTestBackend(b, reflinkStore(b, 8<<30))
	ctx := testContext(b)
	src, _, err := be.Create(ctx, storage.Spec{Name: "src", Kind: storage.XFS, Size: 1 << 30, Mode: 0o777})
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 64<<20)
	rand.Read(chunk)
	f, err := os.Create(filepath.Join(src.Path, "data"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	f.Sync()
	f.Close()
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, _, err := be.Clone(ctx, "src", storage.Spec{Name: "dst", Kind: storage.XFS, Size: 1 << 30, Mode: 0o777}, nil); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		b.StopTimer()
		if err := be.Remove(ctx, "dst"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/clone")
}
