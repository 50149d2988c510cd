package fsimage

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// reflinkStore mounts a fresh XFS filesystem (reflink on, mkfs.xfs's
// default) on a loop device and returns its mount point: a store where
// FICLONE works. Unmounted and detached when the test ends.
func reflinkStore(t testing.TB, size int64) string {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	image := filepath.Join(dir, "store.img")
	f, err := os.Create(image)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	if _, err := run(testContext(t), nil, "mkfs.xfs", "-q", "-f", "-K", "-s", "size=4096", "-m", "reflink=1", image); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mp, 0o700); err != nil {
		t.Fatal(err)
	}
	lp, dev, err := attachLoop(image)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Mount(lp.Path(), mp, "xfs", 0, "")
	dev.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the backend's cleanup, so it runs after it.
	t.Cleanup(func() {
		for i := 0; i < 100 && unix.Unmount(mp, 0) == unix.EBUSY; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		assertNoLeftovers(t, dir)
	})
	return mp
}

func TestClone(t *testing.T) {
	needRoot(t)
	stores := []struct {
		name    string
		root    func(t *testing.T) string
		reflink bool
	}{
		{"copy", func(t *testing.T) string { return t.TempDir() }, false}, // the host's ext4: no reflink
		{"reflink", func(t *testing.T) string { return reflinkStore(t, 8<<30) }, true},
	}
	for _, st := range stores {
		for _, kind := range kinds {
			t.Run(st.name+"/"+string(kind), func(t *testing.T) {
				b, store := newTestBackend(t, st.root(t))
				ctx := testContext(t)
				src, _, err := b.Create(ctx, spec("src", kind, 200<<20))
				if err != nil {
					t.Fatal(err)
				}
				payload := make([]byte, 100<<20)
				rand.Read(payload)
				if err := os.WriteFile(filepath.Join(src.Path, "data"), payload, 0o644); err != nil {
					t.Fatal(err)
				}
				// A writer keeps writing to the source through the clone:
				// it waits while the source is frozen, and never fails.
				var stop atomic.Bool
				var wg sync.WaitGroup
				var writes atomic.Int64
				var writeErr error
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						if err := os.WriteFile(filepath.Join(src.Path, "live"), []byte{byte(i)}, 0o644); err != nil {
							writeErr = err
							return
						}
						writes.Add(1)
					}
				}()
				unix.Sync() // the payload reaches the source's image first
				var before unix.Statfs_t
				unix.Statfs(store, &before)
				var calls int
				var last int64
				dst := spec("dst", kind, src.Size+100<<20)
				dst.UID, dst.Mode = 3000, 0o750
				v, created, err := b.Clone(ctx, "src", dst, func(done, total int64) {
					calls++
					if done < last || done > total {
						t.Errorf("progress %d of %d after %d", done, total, last)
					}
					last = done
				})
				stop.Store(true)
				wg.Wait()
				if err != nil || !created {
					t.Fatalf("Clone: %v created %v", err, created)
				}
				if writeErr != nil || writes.Load() == 0 {
					t.Errorf("writer on the source: %d writes, %v", writes.Load(), writeErr)
				}
				if calls == 0 || last != src.Size {
					t.Errorf("progress: %d calls, last %d, want %d", calls, last, src.Size)
				}
				if v.Size != dst.Size || v.Path != b.mountPoint("dst") {
					t.Errorf("clone %+v, want size %d", v, dst.Size)
				}
				got, err := os.ReadFile(filepath.Join(v.Path, "data"))
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("clone's data: %d bytes, %v", len(got), err)
				}
				if total, _, _ := statfsSize(v.Path); total < src.Size {
					t.Errorf("clone's filesystem is %d bytes, not grown to %d", total, v.Size)
				}
				var rootSt unix.Stat_t
				unix.Stat(v.Path, &rootSt)
				if rootSt.Uid != 3000 || rootSt.Mode&0o7777 != 0o750 {
					t.Errorf("clone's root %d %o, want 3000 750", rootSt.Uid, rootSt.Mode&0o7777)
				}
				if fsUUID(t, b.imagePath("src")) == fsUUID(t, b.imagePath("dst")) {
					t.Error("the clone has its source's filesystem UUID")
				}
				var after unix.Statfs_t
				unix.Statfs(store, &after)
				used := (int64(before.Bavail) - int64(after.Bavail)) * before.Bsize
				t.Logf("the clone took %d MiB of the store", used>>20)
				// A reflink clone shares the data (it takes what the new log
				// and UUID rewrite); a copy has its own, and stays sparse.
				if st.reflink && used >= 100<<20 {
					t.Errorf("a reflink clone of 100 MiB of data took %d MiB of the store", used>>20)
				}
				var imgSt unix.Stat_t
				unix.Stat(b.imagePath("dst"), &imgSt)
				if !st.reflink && (imgSt.Blocks*512 < 100<<20 || imgSt.Blocks*512 >= imgSt.Size) {
					t.Errorf("the copy has %d MiB of its %d MiB allocated", imgSt.Blocks>>11, imgSt.Size>>20)
				}
				// Both are writable, independently: the source was thawed.
				os.WriteFile(filepath.Join(v.Path, "data"), []byte("changed"), 0o644)
				if got, _ := os.ReadFile(filepath.Join(src.Path, "data")); !bytes.Equal(got, payload) {
					t.Error("writing the clone changed the source")
				}
				// Closing and opening both works: distinct UUIDs mount side by side.
				for _, n := range []string{"src", "dst"} {
					if err := b.Close(ctx, n); err != nil {
						t.Fatal(err)
					}
				}
				for _, n := range []string{"dst", "src"} {
					if _, err := b.Open(ctx, n); err != nil {
						t.Fatal(err)
					}
				}
				// A repeated Clone is an Open; bad sources are refused.
				if _, created, err := b.Clone(ctx, "src", dst, nil); err != nil || created {
					t.Errorf("repeated Clone: created %v, %v", created, err)
				}
				if _, _, err := b.Clone(ctx, "nothing", spec("d2", kind, 1), nil); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("Clone of a missing source: %v", err)
				}
				other := storage.XFS
				if kind == storage.XFS {
					other = storage.Ext4
				}
				if _, _, err := b.Clone(ctx, "src", spec("d3", other, 1), nil); !errors.Is(err, storage.ErrUnsupported) {
					t.Errorf("Clone across kinds: %v", err)
				}
				// A closed source clones too (nothing to freeze).
				if err := b.Close(ctx, "src"); err != nil {
					t.Fatal(err)
				}
				if _, _, err := b.Clone(ctx, "src", spec("d4", kind, 1), nil); err != nil {
					t.Errorf("Clone of a closed source: %v", err)
				}
				entries, _ := os.ReadDir(b.opts.ImageDir)
				for _, e := range entries {
					if e.Name()[0] == '.' {
						t.Errorf("temporary image left: %s", e.Name())
					}
				}
				for _, n := range []string{"src", "dst", "d4"} {
					if err := b.Remove(ctx, n); err != nil {
						t.Fatal(err)
					}
				}
				assertNoLeftovers(t, store)
			})
		}
	}
}
