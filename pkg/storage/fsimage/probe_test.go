package fsimage

import (
	"os"
	"os/exec"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestWarmProbeCoversLibblkid: once a new volume is created, the probe
// ganesha makes of its device (libblkid, no cache file, asked for the UUID;
// here through blkid, the same library) finds every page it reads in the
// page cache: it adds none. It fails when libblkid reads other parts of a
// device than probeRanges lists, as a new release of it may.
func TestWarmProbeCoversLibblkid(t *testing.T) {
	blkid, err := exec.LookPath("blkid")
	if err != nil {
		t.Fatalf("blkid (util-linux, which ganesha's libblkid comes with): %v", err)
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			b, _ := newTestBackend(t, "")
			ctx := testContext(t)
			if _, _, err := b.Create(ctx, spec("pvc-1", kind, 10<<20)); err != nil {
				t.Fatal(err)
			}
			lp, found, err := findLoop(b.imagePath("pvc-1"))
			if err != nil || !found {
				t.Fatalf("no loop device for the new volume: %v", err)
			}
			before := residentPages(t, lp.Path())
			if len(before) < 261 {
				t.Errorf("%d pages of %s cached after Create, want at least the 261 libblkid reads", len(before), lp.Path())
			}
			out, err := exec.Command(blkid, "-c", "/dev/null", "-s", "UUID", "-o", "value", lp.Path()).CombinedOutput()
			if err != nil || len(out) < 32 {
				t.Fatalf("blkid: %v: %s", err, out)
			}
			after := residentPages(t, lp.Path())
			for p := range after {
				if !before[p] {
					t.Errorf("libblkid read page %d of %s that was not read ahead", p, lp.Path())
				}
			}
		})
	}
}

// residentPages is the set of pages of block device dev in the page cache.
func residentPages(t *testing.T, dev string) map[int64]bool {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+pageSize-1)/pageSize)
	// x/sys/unix has no wrapper for mincore(2).
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore %s: %v", dev, errno)
	}
	out := map[int64]bool{}
	for i, v := range vec {
		if v&1 != 0 {
			out[int64(i)] = true
		}
	}
	return out
}
