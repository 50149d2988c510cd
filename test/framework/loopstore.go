package framework

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// LoopStore is a small real filesystem (ext4 or XFS on a loop device)
// mounted under a temporary directory, for tests that need a store that
// can really fill up.
type LoopStore struct {
	Dir    string // the mount point: use it as -export-dir
	Image  string // the backing file
	Device string // /dev/loopN

	closeOnce sync.Once
	closeErr  error
}

// NewLoopStore makes a sparse image of size bytes, formats it as fstype
// ("ext4" or "xfs"), attaches it to a free loop device and mounts it. On
// cleanup it is unmounted and detached, even when the test failed; call
// Close earlier to check that nothing leaked (Leaked).
func NewLoopStore(t testing.TB, size int64, fstype string) *LoopStore {
	t.Helper()
	// Not t.TempDir(): named after the test, its path can be too long for
	// the D-Bus socket the provisioner keeps in its store.
	tmp, err := os.MkdirTemp("", "loopstore-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !mounted(filepath.Join(tmp, "mnt")) {
			_ = os.RemoveAll(tmp)
		}
	})
	s := &LoopStore{Image: filepath.Join(tmp, "store.img"), Dir: filepath.Join(tmp, "mnt")}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(s.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		t.Fatalf("framework: loop store image: %v", err)
	}
	var mkfs []string
	switch fstype {
	case "ext4":
		// -m 0: no blocks reserved for root, which the provisioner is, so
		// "full" is full for it too.
		mkfs = []string{"mkfs.ext4", "-q", "-F", "-m", "0", s.Image}
	case "xfs":
		mkfs = []string{"mkfs.xfs", "-q", "-f", s.Image}
	default:
		t.Fatalf("framework: loop store: filesystem %q: want ext4 or xfs", fstype)
	}
	if out, err := exec.Command(mkfs[0], mkfs[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("framework: %s: %v\n%s", strings.Join(mkfs, " "), err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", s.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("framework: losetup %s: %v\n%s", s.Image, err, out)
	}
	s.Device = strings.TrimSpace(string(out))
	// Registered before the mount, so a failed mount still detaches.
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("framework: %v", err)
		}
	})
	if err := unix.Mount(s.Device, s.Dir, fstype, 0, ""); err != nil {
		t.Fatalf("framework: mount %s on %s: %v", s.Device, s.Dir, err)
	}
	return s
}

// Close unmounts the store and detaches its loop device. A mount still busy
// (a process of the test that is still exiting) is retried for a while,
// then detached lazily so the device can go. Close is idempotent.
func (s *LoopStore) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if mounted(s.Dir) {
			var err error
			for deadline := time.Now().Add(15 * time.Second); ; {
				if err = unix.Unmount(s.Dir, 0); err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if errors.Is(err, unix.EBUSY) {
				errs = append(errs, fmt.Errorf("unmount %s: still busy after 15s; detaching lazily", s.Dir))
				err = unix.Unmount(s.Dir, unix.MNT_DETACH)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", s.Dir, err))
			}
		}
		if s.Device != "" {
			if out, err := exec.Command("losetup", "-d", s.Device).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("losetup -d %s: %v: %s", s.Device, err, out))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Leaked reports what of the store is still there after Close: its mount,
// or a loop device attached to its image.
func (s *LoopStore) Leaked() error {
	var errs []error
	if mounted(s.Dir) {
		errs = append(errs, fmt.Errorf("%s is still mounted", s.Dir))
	}
	out, err := exec.Command("losetup", "-j", s.Image).CombinedOutput()
	if err != nil {
		errs = append(errs, fmt.Errorf("losetup -j %s: %v: %s", s.Image, err, out))
	} else if strings.TrimSpace(string(out)) != "" {
		errs = append(errs, fmt.Errorf("loop device still attached: %s", strings.TrimSpace(string(out))))
	}
	return errors.Join(errs...)
}

// mounted reports whether dir is a mount point, from /proc/self/mountinfo.
func mounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
