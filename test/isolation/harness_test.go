package isolation

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage/fsimage"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func needRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ganesha.nfsd, loop devices and mounts; skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root (loop devices, mounts, ganesha)")
	}
}

// startGanesha starts the real ganesha (NFSv3 on) on loopback ports, its
// state outside the store, and stops it when the test ends.
func startGanesha(t testing.TB) (*ganesha.Server, ganesha.Config) {
	t.Helper()
	p, err := framework.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ganesha.Config{StateDir: filepath.Join(t.TempDir(), "state"), BindAddress: "127.0.0.1", NFSPort: p[0], MountdPort: p[1], NFSv3: true}
	s, err := ganesha.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("stop ganesha: %v", err)
		}
	})
	return s, cfg
}

func target(cfg ganesha.Config, pseudo string) nfsclient.Target {
	return nfsclient.Target{Host: "127.0.0.1", NFSPort: cfg.NFSPort, MountPort: cfg.MountdPort, Pseudo: pseudo, Version: 3}
}

// newBackend makes a store (on the host's disk: no filesystem of its own)
// and a filesystem-volume backend in it, and unmounts and detaches
// whatever is left under the store when the test ends (registered before
// ganesha starts, so it runs after ganesha stops).
func newBackend(t testing.TB) (*fsimage.Backend, string) {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { release(t, store) })
	b, err := fsimage.New(testContext(t), fsimage.Options{
		ImageDir: filepath.Join(store, ".nfs-provisioner", "images"),
		MountDir: filepath.Join(store, ".nfs-provisioner", "mounts"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, store
}

// release unmounts everything under dir (deepest first) and detaches the
// loop devices whose backing file is under it.
func release(t testing.TB, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	var mps []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mps = append(mps, f[4])
		}
	}
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mps {
		for i := 0; i < 100 && unix.Unmount(mp, 0) == unix.EBUSY; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err != nil || !strings.HasPrefix(string(b), dir+"/") {
			continue
		}
		if f, err := os.Open("/dev/" + e.Name()); err == nil {
			unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
			f.Close()
		}
	}
}

// kernelHandle is name_to_handle_at of path: the bytes FSAL_VFS puts in its
// NFS handles.
func kernelHandle(t testing.TB, path string) unix.FileHandle {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", path, err)
	}
	return h
}
