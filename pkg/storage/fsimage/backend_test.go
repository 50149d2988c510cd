package fsimage

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

var kinds = []storage.Kind{storage.XFS, storage.Ext4}

// fill writes to dir/name until the filesystem says it is full, and returns
// how much it wrote and the error that stopped it.
func fill(dir, name string) (int64, error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if err := f.Sync(); err != nil && n%(64<<20) == 0 {
			return n, err
		}
	}
}

func TestLifecycle(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			b, store := newTestBackend(t, "")
			ctx := testContext(t)
			s := spec("pvc-1", kind, 10<<20)
			v, created, err := b.Create(ctx, s)
			if err != nil || !created {
				t.Fatalf("Create: %v, created %v", err, created)
			}
			if want := RoundSize(kind, s.Size); v.Size != want || v.Kind != kind || v.Path != b.mountPoint("pvc-1") {
				t.Errorf("Create gave %+v, want size %d", v, want)
			}
			// The root directory has the spec's owner and mode.
			var st unix.Stat_t
			if err := unix.Stat(v.Path, &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 1000 || st.Gid != 2000 || st.Mode&0o7777 != 0o2775 {
				t.Errorf("root %d:%d %o, want 1000:2000 2775", st.Uid, st.Gid, st.Mode&0o7777)
			}
			if _, err := unix.Getxattr(b.imagePath("pvc-1"), initXattr, make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
				t.Errorf("init xattr still on the image: %v", err)
			}
			// Mounted on buffered I/O; switched to direct I/O by the next
			// Open (reconciliation opens every volume), so that the image is
			// cached once.
			if _, err := b.Open(ctx, "pvc-1"); err != nil {
				t.Fatal(err)
			}
			assertDirectIO(t, b.imagePath("pvc-1"))
			// statfs reports the volume's own size, not the store's.
			total, _, err := statfsSize(v.Path)
			if err != nil {
				t.Fatal(err)
			}
			if total > v.Size || total < v.Size*3/4 {
				t.Errorf("statfs says %d bytes; the volume is %d", total, v.Size)
			}
			// Writing past the size fails with ENOSPC.
			n, err := fill(v.Path, "big")
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("writing %d bytes ended with %v, want ENOSPC", n, err)
			}
			if n > v.Size {
				t.Errorf("wrote %d bytes into a %d-byte volume", n, v.Size)
			}
			os.Remove(filepath.Join(v.Path, "big"))
			if err := os.WriteFile(filepath.Join(v.Path, "f"), []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			// A repeated Create is an Open.
			v2, created, err := b.Create(ctx, s)
			if err != nil || created || v2 != v {
				t.Errorf("second Create: %+v created %v err %v", v2, created, err)
			}
			// The same name as the other kind is refused.
			other := s
			other.Kind = kinds[0]
			if kind == kinds[0] {
				other.Kind = kinds[1]
			}
			if _, _, err := b.Create(ctx, other); err == nil {
				t.Errorf("Create of %s as %s succeeded", s.Name, other.Kind)
			}
			// Close: no mount, no mount point, no loop device; twice is fine.
			for i := 0; i < 2; i++ {
				if err := b.Close(ctx, "pvc-1"); err != nil {
					t.Fatal(err)
				}
			}
			assertNoLeftovers(t, store)
			if _, err := os.Stat(v.Path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("mount point still there after Close: %v", err)
			}
			// Open brings it back with its data; twice attaches once.
			for i := 0; i < 2; i++ {
				if v2, err = b.Open(ctx, "pvc-1"); err != nil || v2 != v {
					t.Fatalf("Open: %+v %v", v2, err)
				}
			}
			if _, loops := leftovers(t, store); len(loops) != 1 {
				t.Errorf("%d loop devices for one volume", len(loops))
			}
			assertDirectIO(t, b.imagePath("pvc-1"))
			if data, err := os.ReadFile(filepath.Join(v.Path, "f")); string(data) != "data" {
				t.Errorf("after Close and Open: %q, %v", data, err)
			}
			if _, err := b.Open(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Open of a missing volume: %v", err)
			}
			// List and Usage.
			if _, _, err := b.Create(ctx, spec("pvc-2", kind, 1)); err != nil {
				t.Fatal(err)
			}
			names, err := b.List(ctx)
			if err != nil || !slices.Equal(names, []string{"pvc-1", "pvc-2"}) {
				t.Errorf("List: %v %v", names, err)
			}
			u, err := b.Usage(ctx)
			if err != nil || u.Allocated != 2*v.Size || u.Total <= 0 || u.Free <= 0 {
				t.Errorf("Usage: %+v %v, want Allocated %d", u, err, 2*v.Size)
			}
			// Archive keeps the image under a name List never shows, and
			// counts it in Usage.
			a, err := b.Archive(ctx, "pvc-1", time.Now())
			if err != nil || a != "archived-pvc-1" {
				t.Fatalf("Archive: %q %v", a, err)
			}
			if a, err := b.Archive(ctx, "pvc-1", time.Now()); err != nil || a != "" {
				t.Errorf("Archive of an archived volume: %q %v", a, err)
			}
			names, _ = b.List(ctx)
			if !slices.Equal(names, []string{"pvc-2"}) {
				t.Errorf("List after Archive: %v", names)
			}
			if u2, _ := b.Usage(ctx); u2.Allocated != u.Allocated {
				t.Errorf("Allocated after Archive %d, want %d", u2.Allocated, u.Allocated)
			}
			// An archive clash gets a time suffix.
			if _, _, err := b.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
			if a, err := b.Archive(ctx, "pvc-1", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil || a != "archived-pvc-1-20260102T030405.000000000" {
				t.Errorf("second Archive: %q %v", a, err)
			}
			// Remove deletes; twice is fine.
			for i := 0; i < 2; i++ {
				if err := b.Remove(ctx, "pvc-2"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.Stat(b.imagePath("pvc-2")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("image still there after Remove: %v", err)
			}
			assertNoLeftovers(t, store)
		})
	}
}

func TestBadInput(t *testing.T) {
	b, store := newTestBackend(t, "")
	ctx := testContext(t)
	for _, name := range []string{"", ".hidden", "a/b", "archived-x", string(make([]byte, 256)), "nul\x00"} {
		if _, _, err := b.Create(ctx, spec(name, storage.XFS, 1)); err == nil {
			t.Errorf("Create(%q) succeeded", name)
		}
		if _, err := b.Open(ctx, name); err == nil {
			t.Errorf("Open(%q) succeeded", name)
		}
		if err := b.Remove(ctx, name); err == nil {
			t.Errorf("Remove(%q) succeeded", name)
		}
	}
	bad := []storage.Spec{
		{Name: "k", Kind: storage.Directory, Size: 1},
		{Name: "s", Kind: storage.XFS, Size: -1},
		{Name: "u", Kind: storage.XFS, Size: 1, UID: -1},
	}
	for _, s := range bad {
		if _, _, err := b.Create(ctx, s); err == nil {
			t.Errorf("Create(%+v) succeeded", s)
		}
	}
	if _, _, err := b.Create(ctx, storage.Spec{Name: "k", Kind: storage.Directory}); !errors.Is(err, storage.ErrUnsupported) {
		t.Errorf("directory kind: %v, want ErrUnsupported", err)
	}
	// An image that is not a filesystem is refused by Open, and stays.
	if err := os.WriteFile(b.imagePath("junk"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(ctx, "junk"); err == nil {
		t.Error("Open of a junk image succeeded")
	}
	if _, err := os.Stat(b.imagePath("junk")); err != nil {
		t.Errorf("junk image gone: %v", err)
	}
	// A store without room: nothing is left behind.
	entries, _ := os.ReadDir(b.opts.ImageDir)
	if _, _, err := b.Create(ctx, spec("huge", storage.XFS, 1<<59)); err == nil {
		t.Error("Create of 512 PiB succeeded")
	}
	after, _ := os.ReadDir(b.opts.ImageDir)
	if len(after) != len(entries) {
		t.Errorf("failed Create left %d files, had %d", len(after), len(entries))
	}
	assertNoLeftovers(t, store)
}

func TestExpandXFSOnlineWhileWriting(t *testing.T) {
	b, store := newTestBackend(t, "")
	ctx := testContext(t)
	v, _, err := b.Create(ctx, spec("grow", storage.XFS, 300<<20))
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var writeErr error
	var written int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.Create(filepath.Join(v.Path, "stream"))
		if err != nil {
			writeErr = err
			return
		}
		defer f.Close()
		buf := bytes.Repeat([]byte("x"), 1<<20)
		for !stop.Load() && written < 150<<20 {
			if _, err := f.Write(buf); err != nil {
				writeErr = err
				return
			}
			written += int64(len(buf))
		}
		writeErr = f.Sync()
	}()
	time.Sleep(20 * time.Millisecond)
	size, err := b.Expand(ctx, "grow", 800<<20, storage.Online)
	stop.Store(true)
	wg.Wait()
	if err != nil || size != 800<<20 {
		t.Fatalf("Expand: %d %v", size, err)
	}
	if writeErr != nil {
		t.Errorf("writer during growth: %v", writeErr)
	}
	total, _, _ := statfsSize(v.Path)
	if total < 700<<20 {
		t.Errorf("statfs after growth: %d bytes", total)
	}
	// Now more than the old size fits.
	n, err := fill(v.Path, "more")
	if !errors.Is(err, syscall.ENOSPC) || n+written < 400<<20 {
		t.Errorf("after growth wrote %d+%d bytes, then %v", written, n, err)
	}
	// Idempotent; a smaller size is refused.
	if size, err := b.Expand(ctx, "grow", 800<<20, storage.Online); err != nil || size != 800<<20 {
		t.Errorf("repeated Expand: %d %v", size, err)
	}
	if _, err := b.Expand(ctx, "grow", 400<<20, storage.Online); !errors.Is(err, storage.ErrUnsupported) {
		t.Errorf("shrink: %v, want ErrUnsupported", err)
	}
	// A closed XFS volume grows too, and stays closed.
	if err := b.Close(ctx, "grow"); err != nil {
		t.Fatal(err)
	}
	if size, err := b.Expand(ctx, "grow", 900<<20, storage.Online); err != nil || size != 900<<20 {
		t.Errorf("Expand of a closed volume: %d %v", size, err)
	}
	assertNoLeftovers(t, store)
	if _, err := b.Expand(ctx, "missing", 1<<30, storage.Online); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Expand of a missing volume: %v", err)
	}
}

func TestExpandExt4Offline(t *testing.T) {
	b, store := newTestBackend(t, "")
	ctx := testContext(t)
	v, _, err := b.Create(ctx, spec("grow", storage.Ext4, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 40<<20)
	rand.Read(payload)
	if err := os.WriteFile(filepath.Join(v.Path, "data"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	size, err := b.Expand(ctx, "grow", 200<<20, storage.Online)
	if hasCapability(capSysResource) {
		// Where online ext4 growth is allowed, it is done.
		if err != nil || size != 200<<20 {
			t.Fatalf("online Expand with CAP_SYS_RESOURCE: %d %v", size, err)
		}
	} else {
		if !errors.Is(err, storage.ErrOfflineRequired) {
			t.Fatalf("online Expand without CAP_SYS_RESOURCE: %d %v, want ErrOfflineRequired", size, err)
		}
		// Nothing changed: same image size, still mounted.
		if fi, _ := os.Stat(b.imagePath("grow")); fi.Size() != v.Size {
			t.Errorf("image is %d bytes after a refused growth, was %d", fi.Size(), v.Size)
		}
		if ok, _ := isMounted(v.Path); !ok {
			t.Error("a refused online growth unmounted the volume")
		}
		if size, err = b.Expand(ctx, "grow", 200<<20, storage.Offline); err != nil || size != 200<<20 {
			t.Fatalf("offline Expand: %d %v", size, err)
		}
		assertNoLeftovers(t, store) // the caller opens it again
	}
	if v, err = b.Open(ctx, "grow"); err != nil || v.Size != 200<<20 {
		t.Fatalf("Open after growth: %+v %v", v, err)
	}
	total, _, _ := statfsSize(v.Path)
	if total < 180<<20 {
		t.Errorf("statfs after growth: %d bytes", total)
	}
	if got, err := os.ReadFile(filepath.Join(v.Path, "data")); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("data after growth: %d bytes, %v", len(got), err)
	}
	// The added room is usable.
	if err := os.WriteFile(filepath.Join(v.Path, "more"), payload[:30<<20], 0o644); err != nil {
		t.Errorf("write into the added room: %v", err)
	}
	if _, err := b.Expand(ctx, "grow", 100<<20, storage.Offline); !errors.Is(err, storage.ErrUnsupported) {
		t.Errorf("shrink: %v, want ErrUnsupported", err)
	}
}
