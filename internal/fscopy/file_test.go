package fscopy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// sparseLayout is a 64 MiB file with data at the start, in the middle, across
// a 1 MiB boundary, and a hole at the end.
var sparseLayout = []extent{
	{0, 64 << 10},
	{8 << 20, 3 << 20},
	{(20 << 20) - 4096, 8192},
	{40 << 20, 4096},
}

const sparseSize = 64 << 20

func TestCopyFile(t *testing.T) {
	xfs := mountFS(t, "xfs", 400)
	ext4 := mountFS(t, "ext4", 200)
	for _, tc := range []struct {
		name          string
		srcDir        string
		dstDir        string
		wantReflinked bool
	}{
		{"host disk", t.TempDir(), t.TempDir(), false},
		{"ext4", ext4, ext4, false},
		{"xfs reflink", xfs, xfs, true},
		{"ext4 to xfs", ext4, xfs, false},
		{"xfs to ext4", xfs, ext4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(tc.srcDir, "src-"+filepath.Base(t.Name()))
			dst := filepath.Join(tc.dstDir, "dst-"+filepath.Base(t.Name()))
			writeSparse(t, src, sparseSize, sparseLayout)
			var calls int
			var last [2]int64
			reflinked, err := CopyFile(context.Background(), dst, src, func(done, total int64) {
				calls++
				if done < last[0] {
					t.Errorf("progress went back from %d to %d", last[0], done)
				}
				last = [2]int64{done, total}
			})
			if err != nil {
				t.Fatal(err)
			}
			if reflinked != tc.wantReflinked {
				t.Errorf("reflinked = %v, want %v", reflinked, tc.wantReflinked)
			}
			assertSameFile(t, dst, src, sparseLayout)
			if got := lstat(t, dst).Mode & 0o7777; got != 0o640 {
				t.Errorf("mode %o, want the source's 640", got)
			}
			// A fast copy reports once, at the end; never more than once a
			// second plus the end.
			if last != [2]int64{sparseSize, sparseSize} {
				t.Errorf("last progress %v, want done == total == %d", last, sparseSize)
			}
			if calls < 1 || calls > 3 {
				t.Errorf("%d progress calls for a copy of well under a second", calls)
			}
		})
	}
}

// TestCopyFileSparseBlocks checks that a mostly-hole file costs only its data
// on disk after the copy.
func TestCopyFileSparseBlocks(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	writeSparse(t, src, 256<<20, []extent{{128 << 20, 1 << 20}})
	if _, err := CopyFile(context.Background(), dst, src, nil); err != nil {
		t.Fatal(err)
	}
	assertSameFile(t, dst, src, []extent{{128 << 20, 1 << 20}})
	if b := lstat(t, dst).Blocks * 512; b > 2<<20 {
		t.Fatalf("a 256 MiB file with 1 MiB of data takes %d bytes on disk", b)
	}
}

func TestCopyFileRefusesExistingDst(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	writeSparse(t, src, 1<<20, []extent{{0, 4096}})
	if err := os.WriteFile(dst, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CopyFile(context.Background(), dst, src, nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("err = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "precious" {
		t.Fatalf("existing dst changed or removed: %q", b)
	}

	// A symlink at dst is not followed: its target is neither written nor
	// removed.
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("target"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := CopyFile(context.Background(), link, src, nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("err = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "target" {
		t.Fatalf("symlink target changed: %q", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink at dst removed or replaced: %v %v", fi, err)
	}
}

func TestCopyFileRefusesBadSource(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		"symlink":   link,
		"directory": dir,
		"missing":   filepath.Join(dir, "missing"),
		"device":    "/dev/null",
	} {
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(dir, "dst-"+name)
			if _, err := CopyFile(context.Background(), dst, src, nil); err == nil {
				t.Fatal("no error")
			} else {
				t.Log(err)
			}
			if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("dst left behind: %v", err)
			}
		})
	}
}

func TestCopyFileCancel(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeSparse(t, src, 256<<20, []extent{{0, 64 << 20}, {128 << 20, 64 << 20}})

	t.Run("before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		dst := filepath.Join(dir, "dst-before")
		if _, err := CopyFile(ctx, dst, src, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("dst made: %v", err)
		}
	})
	t.Run("midway", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dst := filepath.Join(dir, "dst-midway")
		var seen int64
		// Interval 0: progress after every chunk; cancel after the first.
		_, err := copyFile(ctx, dst, src, func(done, total int64) {
			if seen == 0 {
				if _, err := os.Lstat(dst); err != nil {
					t.Errorf("dst does not exist while copying: %v", err)
				}
				cancel()
			}
			seen = done
		}, 0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if seen == 0 || seen >= 256<<20 {
			t.Fatalf("cancelled at %d bytes: not midway", seen)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("partial dst left behind: %v", err)
		}
	})
}

// TestCopyFileNoSpace copies 40 MiB of data into a 16 MiB filesystem: the
// copy fails with ENOSPC and leaves no partial file.
func TestCopyFileNoSpace(t *testing.T) {
	small := mountFS(t, "ext4", 16)
	src := filepath.Join(t.TempDir(), "src")
	writeSparse(t, src, 100<<20, []extent{{0, 40 << 20}})
	dst := filepath.Join(small, "dst")
	_, err := CopyFile(context.Background(), dst, src, nil)
	if err == nil {
		t.Fatal("40 MiB fit into 16 MiB")
	}
	t.Log(err)
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial dst left behind: %v", err)
	}
}

func TestProgressRate(t *testing.T) {
	var calls int
	p := newProgress(func(done, total int64) { calls++ }, 100, time.Hour)
	for range 100 {
		p.add(1)
	}
	p.finish()
	if calls != 1 {
		t.Fatalf("%d calls within one interval, want only the final one", calls)
	}
}
