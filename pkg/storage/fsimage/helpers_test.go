package fsimage

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// needRoot: these tests attach loop devices and mount filesystems.
func needRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs loop devices and mounts; skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("these tests need root (loop devices, mount)")
	}
}

// newTestBackend makes a backend whose store is a fresh directory under
// root (a t.TempDir when root is ""), and undoes every mount and loop device
// under it when the test ends, whatever happened.
func newTestBackend(t testing.TB, root string) (*Backend, string) {
	t.Helper()
	needRoot(t)
	if root == "" {
		root = t.TempDir()
	}
	store, err := os.MkdirTemp(root, "store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseAll(t, store) })
	b, err := New(testContext(t), Options{
		ImageDir: filepath.Join(store, ".nfs-provisioner", "images"),
		MountDir: filepath.Join(store, ".nfs-provisioner", "mounts"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, store
}

// leftovers lists the mounts under dir and the loop devices whose backing
// file is under dir.
func leftovers(t testing.TB, dir string) (mps []string, loops []loopDevice) {
	t.Helper()
	all, err := mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if strings.HasPrefix(m.Point, dir+"/") {
			mps = append(mps, m.Point)
		}
	}
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		idx, ok := loopIndex(e.Name())
		if !ok {
			continue
		}
		backing, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(string(backing)), dir+"/") {
			loops = append(loops, loopDevice{Index: idx, Dev: unix.Mkdev(loopMajor, uint32(idx))})
		}
	}
	return mps, loops
}

// releaseAll unmounts (deepest first) and detaches everything under dir.
func releaseAll(t testing.TB, dir string) {
	mps, _ := leftovers(t, dir)
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mps {
		thaw(mp)
		for i := 0; i < 100; i++ {
			if err := unix.Unmount(mp, 0); err == nil || err == unix.EINVAL {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	_, loops := leftovers(t, dir)
	for _, l := range loops {
		detachLoop(l)
	}
	if mps, loops := leftovers(t, dir); len(mps)+len(loops) > 0 {
		t.Errorf("could not release %v, %v", mps, loops)
	}
}

// assertNoLeftovers fails when anything under dir is mounted or attached.
func assertNoLeftovers(t testing.TB, dir string) {
	t.Helper()
	if mps, loops := leftovers(t, dir); len(mps)+len(loops) > 0 {
		t.Errorf("left behind: mounts %v, loop devices %v", mps, loops)
	}
}

// fsUUID reads the filesystem UUID from an image's superblock.
func fsUUID(t testing.TB, image string) string {
	t.Helper()
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kind, err := readKind(image)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	off := int64(1024 + 0x68) // ext4 s_uuid
	if kind == storage.XFS {
		off = 32 // sb_uuid
	}
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

func spec(name string, kind storage.Kind, size int64) storage.Spec {
	return storage.Spec{Name: name, Kind: kind, Size: size, UID: 1000, GID: 2000, Mode: os.ModeSetgid | 0o775}
}

// statfsSize is the size statfs reports for the filesystem at path.
func statfsSize(path string) (total, avail int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize, nil
}

// assertDirectIO checks that the loop device serving image does direct I/O
// whenever the store lets the image be opened with O_DIRECT.
func assertDirectIO(t testing.TB, image string) {
	t.Helper()
	lp, found, err := findLoop(image)
	if err != nil || !found {
		t.Fatalf("no loop device for %s: %v", image, err)
	}
	want := false
	if f, err := os.OpenFile(image, os.O_RDONLY|unix.O_DIRECT, 0); err == nil {
		f.Close()
		want = true
	}
	if got := directIO(lp); got != want {
		t.Errorf("%s serves %s with direct I/O %v; the store accepts O_DIRECT: %v", lp.Path(), image, got, want)
	}
}
