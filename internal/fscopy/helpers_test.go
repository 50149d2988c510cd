package fscopy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mountFS makes a filesystem of type fstype ("xfs" or "ext4") of sizeMiB in a
// sparse image under t.TempDir, attaches it to a loop device and mounts it.
// Cleanup unmounts and detaches, also when the test fails. It needs root.
func mountFS(t testing.TB, fstype string, sizeMiB int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test mounts a %s loop filesystem and must run as root", fstype)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, fstype+".img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	mkfs := map[string][]string{
		"xfs":  {"mkfs.xfs", "-q", "-m", "reflink=1", img},
		"ext4": {"mkfs.ext4", "-q", "-F", "-b", "4096", img}, // 4 KiB blocks: room for big xattrs
	}[fstype]
	run(t, mkfs...)
	dev := strings.TrimSpace(run(t, "losetup", "-f", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v: %s", dev, err, out)
		}
	})
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", fstype, dev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s (xfsprogs missing? hack/install-deps.sh installs it)", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extent is a byte range of a file.
type extent struct{ off, len int64 }

// writeSparse makes a file of size bytes holding random data only in the
// given extents; the rest is holes.
func writeSparse(t testing.TB, path string, size int64, data []extent) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(uint64(size), uint64(len(data))))
	buf := make([]byte, 1<<20)
	for _, e := range data {
		for done := int64(0); done < e.len; {
			n := min(int64(len(buf)), e.len-done)
			for i := range buf[:n] {
				buf[i] = byte(rng.Uint32() | 1) // never zero: real data
			}
			if _, err := f.WriteAt(buf[:n], e.off+done); err != nil {
				t.Fatal(err)
			}
			done += n
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// dataMap lists the data extents of path as SEEK_DATA/SEEK_HOLE see them.
func dataMap(t testing.TB, path string) []extent {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var m []extent
	for off := int64(0); off < fi.Size(); {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		m = append(m, extent{data, hole - data})
		off = hole
	}
	return m
}

func lstat(t testing.TB, path string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// sameContents compares two files chunk by chunk (faster than hashing the
// holes of big sparse files).
func sameContents(t testing.TB, a, b string) bool {
	t.Helper()
	fa, err := os.OpenFile(a, os.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.OpenFile(b, os.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea
		}
		if ea != nil || eb != nil {
			t.Fatal(ea, eb)
		}
	}
}

// assertSameFile checks that dst has src's size and bytes, holds data where
// src was written (written, if known), and takes no more data extents and no
// more blocks than src: sparse stays sparse. The extent maps are not compared
// one to one: XFS reports its speculative preallocations inside a file as
// data, so a copy may be sparser than its source.
func assertSameFile(t testing.TB, dst, src string, written []extent) {
	t.Helper()
	s, d := lstat(t, src), lstat(t, dst)
	if s.Size != d.Size {
		t.Fatalf("size: %d, want %d", d.Size, s.Size)
	}
	if !sameContents(t, src, dst) {
		t.Fatalf("contents of %s differ from %s", dst, src)
	}
	ms, md := dataMap(t, src), dataMap(t, dst)
	if sum(md) > sum(ms) {
		t.Fatalf("data extents: %v, more than the source's %v", md, ms)
	}
	for _, w := range written {
		if !covered(md, w) {
			t.Fatalf("data extents %v do not cover written range %v", md, w)
		}
	}
	if d.Blocks > s.Blocks {
		t.Fatalf("st_blocks: %d, want at most the source's %d (holes filled?)", d.Blocks, s.Blocks)
	}
}

func sum(m []extent) (n int64) {
	for _, e := range m {
		n += e.len
	}
	return n
}

func covered(m []extent, w extent) bool {
	for _, e := range m {
		if e.off <= w.off && w.off+w.len <= e.off+e.len {
			return true
		}
	}
	return false
}

// fileContains reports whether the regular file path contains needle.
func fileContains(t testing.TB, path string, needle []byte) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, needle)
}
