package fscopy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCopyTree(t *testing.T) {
	xfs := mountFS(t, "xfs", 400)
	ext4 := mountFS(t, "ext4", 200)
	for _, tc := range []struct {
		name      string
		src, dst  string
		reflinked bool
	}{
		{"host disk", t.TempDir(), t.TempDir(), false},
		{"xfs reflink", xfs, xfs, true},
		{"ext4 to xfs", ext4, xfs, false},
		{"xfs to ext4", xfs, ext4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outside, secret := makeOutside(t)
			src := filepath.Join(tc.src, "src-"+filepath.Base(t.Name()))
			dst := filepath.Join(tc.dst, "dst-"+filepath.Base(t.Name()))
			for _, d := range []string{src, dst} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			wantTotal := buildTree(t, src, outside)
			snapshot(t, src) // settle the symlinks' access times
			before := snapshot(t, src)

			var last [2]int64
			stats, err := CopyTree(context.Background(), dst, src, TreeOptions{
				Progress: func(done, total int64) { last = [2]int64{done, total} },
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", stats)

			after := snapshot(t, src)
			assertSameTree(t, src, after, src, before) // the copy changed nothing in src, not even atimes
			assertSameTree(t, dst, snapshot(t, dst), src, before)
			assertNoSecret(t, dst, secret)
			if last != [2]int64{wantTotal, wantTotal} {
				t.Errorf("last progress %v, want %d of %d", last, wantTotal, wantTotal)
			}
			want := Stats{Dirs: 7, Files: 11, Symlinks: 5, HardLinks: 3, Specials: 3, Bytes: wantTotal}
			if tc.reflinked {
				want.Reflinked = want.Files
			} else {
				want.DataBytes = stats.DataBytes
				if min, max := wantTotal-16<<20+4096+64<<10, wantTotal-16<<20+(4096+64<<10)*2; stats.DataBytes < min || stats.DataBytes > max {
					t.Errorf("DataBytes %d: not only the data of the sparse file (%d..%d)", stats.DataBytes, min, max)
				}
			}
			if stats.DataBytes != want.DataBytes || stats.Dirs != want.Dirs || stats.Files != want.Files ||
				stats.Symlinks != want.Symlinks || stats.HardLinks != want.HardLinks || stats.Specials != want.Specials ||
				stats.Bytes != want.Bytes || stats.Reflinked != want.Reflinked || stats.Vanished != 0 || stats.SkippedDevices != 0 {
				t.Errorf("stats %+v, want %+v", stats, want)
			}
			if fi, err := os.Lstat(filepath.Join(dst, "dir-out")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("dir-out in the copy: %v %v, want a symlink", fi, err)
			}
		})
	}
}

// TestCopyTreeRaces swaps entries between CopyTree's lstat and its open, the
// window an attacker with write access to a live source would aim at.
func TestCopyTreeRaces(t *testing.T) {
	outside, secret := makeOutside(t)
	src, dst := t.TempDir(), t.TempDir()
	b := tb{t, src}
	b.file("file-to-link", "innocent", 0o644, 0, 0)
	b.dir("dir-to-link", 0o755, 0, 0)
	b.file("dir-to-link/inner", "innocent", 0o644, 0, 0)
	b.file("file-to-fifo", "innocent", 0o644, 0, 0)
	b.file("file-to-device", "innocent", 0o644, 0, 0)
	b.file("vanishing", "innocent", 0o644, 0, 0)
	b.file("file-to-file", "old", 0o644, 0, 0)

	swapped := map[string]bool{}
	swap := func(rel string) {
		if swapped[rel] {
			return
		}
		swapped[rel] = true
		p := b.p(rel)
		switch rel {
		case "file-to-link":
			b.check(os.Remove(p))
			b.check(os.Symlink(filepath.Join(outside, "secret"), p))
		case "dir-to-link":
			b.check(os.RemoveAll(p))
			b.check(os.Symlink(outside, p))
		case "file-to-fifo":
			// Opening a FIFO for reading would block the copy for ever.
			b.check(os.Remove(p))
			b.check(unix.Mknod(p, unix.S_IFIFO|0o644, 0))
		case "file-to-device":
			// Opening a device can have effects; it must not be opened.
			b.check(os.Remove(p))
			b.check(unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
		case "vanishing":
			b.check(os.Remove(p))
		case "file-to-file":
			// Another inode of the same type: copied as it is now.
			b.check(os.Remove(p))
			b.check(os.WriteFile(p, []byte("new"), 0o600))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stats, err := CopyTree(ctx, dst, src, TreeOptions{beforeOpen: swap})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", stats)
	assertNoSecret(t, dst, secret)
	if stats.Vanished != 1 {
		t.Errorf("Vanished = %d, want 1", stats.Vanished)
	}
	for rel, want := range map[string]os.FileMode{
		"file-to-link":   os.ModeSymlink,
		"dir-to-link":    os.ModeSymlink,
		"file-to-fifo":   os.ModeNamedPipe,
		"file-to-device": os.ModeDevice | os.ModeCharDevice,
	} {
		if fi, err := os.Lstat(filepath.Join(dst, rel)); err != nil || fi.Mode().Type() != want {
			t.Errorf("%s in the copy: %v %v, want type %v", rel, fi, err, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "file-to-file")); err != nil || string(b) != "new" {
		t.Errorf("file-to-file: %q %v, want the new file", b, err)
	}
}

func TestCopyTreeRefuses(t *testing.T) {
	base := t.TempDir()
	mk := func(rel string) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := mk("src")
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	full := mk("full")
	if err := os.WriteFile(filepath.Join(full, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := mk("empty")
	dstLink := filepath.Join(base, "dst-link")
	srcLink := filepath.Join(base, "src-link")
	for _, l := range [][2]string{{empty, dstLink}, {src, srcLink}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	inside := mk("src/inside")
	for _, tc := range []struct{ name, dst, src string }{
		{"dst not empty", full, src},
		{"dst missing", filepath.Join(base, "missing"), src},
		{"dst a symlink", dstLink, src},
		{"dst a file", filepath.Join(src, "f"), src},
		{"src a symlink", mk("d1"), srcLink},
		{"src a file", mk("d2"), filepath.Join(src, "f")},
		{"src missing", mk("d3"), filepath.Join(base, "nothing")},
		{"dst inside src", inside, src},
		{"dst is src", empty, empty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snapshot(t, base) // settle the symlinks' access times
			before := snapshot(t, base)
			_, err := CopyTree(context.Background(), tc.dst, tc.src, TreeOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			assertSameTree(t, base, snapshot(t, base), base, before)
		})
	}
}

func TestCopyTreeCancel(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, d := range []string{"a", "b", "c"} {
		if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
		writeSparse(t, filepath.Join(src, d, "data"), 32<<20, []extent{{0, 32 << 20}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var at int64
	_, err := CopyTree(ctx, dst, src, TreeOptions{
		ProgressInterval: time.Nanosecond,
		Progress: func(done, total int64) {
			if at == 0 && done > 0 {
				at = done
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if at == 0 || at >= 96<<20 {
		t.Fatalf("cancelled at %d bytes: not midway", at)
	}
	names, err := os.ReadDir(dst)
	if err != nil || len(names) != 0 {
		t.Fatalf("dst after cancel: %v %v, want it empty", names, err)
	}
}

// TestCopyTreeNoSpace fills the destination filesystem: the copy fails and
// leaves dst empty.
func TestCopyTreeNoSpace(t *testing.T) {
	small := mountFS(t, "ext4", 16)
	src := t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSparse(t, filepath.Join(src, "d", "big"), 40<<20, []extent{{0, 40 << 20}})
	dst := filepath.Join(small, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := CopyTree(context.Background(), dst, src, TreeOptions{})
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC", err)
	}
	t.Log(err)
	if names, err := os.ReadDir(dst); err != nil || len(names) != 0 {
		t.Fatalf("dst after failure: %v %v, want it empty", names, err)
	}
}

// TestCopyTreeWithoutMknod copies a device node without CAP_MKNOD (as in a
// container that drops it): the node is skipped and counted, the rest copied.
func TestCopyTreeWithoutMknod(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	b := tb{t, src}
	b.check(unix.Mknod(b.p("dev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	b.check(unix.Mknod(b.p("fifo"), unix.S_IFIFO|0o600, 0))
	b.file("file", "data", 0o644, 0, 0)

	type result struct {
		stats Stats
		err   error
	}
	done := make(chan result)
	go func() {
		// Capabilities are per thread: drop CAP_MKNOD on a thread of our own
		// and never unlock it, so Go ends the thread with this goroutine.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- result{err: err}
			return
		}
		data[0].Effective &^= 1 << unix.CAP_MKNOD
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- result{err: err}
			return
		}
		if err := unix.Mknod(filepath.Join(t.TempDir(), "probe"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != unix.EPERM {
			done <- result{err: errors.New("mknod still works after dropping CAP_MKNOD")}
			return
		}
		s, err := CopyTree(context.Background(), dst, src, TreeOptions{})
		done <- result{s, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.stats.SkippedDevices != 1 || len(r.stats.SkippedPaths) != 1 || r.stats.SkippedPaths[0] != "dev" {
		t.Errorf("stats %+v, want dev skipped", r.stats)
	}
	if _, err := os.Lstat(filepath.Join(dst, "dev")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dev in the copy: %v", err)
	}
	if r.stats.Specials != 1 || r.stats.Files != 1 {
		t.Errorf("stats %+v, want the fifo and the file copied", r.stats)
	}
}
