package fsimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// loopMajor is the block major number of loop devices (Documentation/admin-guide/devices.txt).
const loopMajor = 7

// loopBlockSize is the logical block size of our loop devices.
const loopBlockSize = 4096

// loopDevice is one attached loop device.
type loopDevice struct {
	Index int
	// Dev is the device number (major 7), as mountinfo names it.
	Dev uint64
	// AutoClear is set when the kernel detaches the device by itself once
	// the last user (the mount) lets go of it.
	AutoClear bool
}

func (l loopDevice) Path() string { return "/dev/loop" + strconv.Itoa(l.Index) }

// findLoop returns the loop device whose backing file is the file at path,
// compared by device and inode, not by name: the kernel's backing_file is
// only the name the file had. ok is false when none is.
//
// The scan reads /sys/block/loop*/loop (present only for bound devices)
// and asks the kernel (LOOP_GET_STATUS64) only about devices whose
// backing_file names path, so it stays cheap with hundreds of devices.
func findLoop(path string) (loopDevice, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return loopDevice{}, false, fmt.Errorf("stat %s: %w", path, err)
	}
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return loopDevice{}, false, fmt.Errorf("list loop devices: %w", err)
	}
	for _, e := range entries {
		idx, ok := loopIndex(e.Name())
		if !ok {
			continue
		}
		backing, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err != nil {
			continue // unbound, or detached meanwhile
		}
		if strings.TrimSuffix(strings.TrimSpace(string(backing)), " (deleted)") != path {
			continue
		}
		dev, match, err := loopBacks(idx, st)
		if err != nil {
			return loopDevice{}, false, err
		}
		if match {
			return dev, true, nil
		}
	}
	return loopDevice{}, false, nil
}

// loopBacks reports whether loop device idx is bound to the file st.
func loopBacks(idx int, st unix.Stat_t) (loopDevice, bool, error) {
	f, err := openLoop(idx, unix.O_RDONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return loopDevice{}, false, nil
		}
		return loopDevice{}, false, err
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		if errors.Is(err, unix.ENXIO) { // detached meanwhile
			return loopDevice{}, false, nil
		}
		return loopDevice{}, false, fmt.Errorf("LOOP_GET_STATUS64 on loop%d: %w", idx, err)
	}
	if info.Device != uint64(st.Dev) || info.Inode != st.Ino {
		return loopDevice{}, false, nil
	}
	return loopDevice{Index: idx, Dev: unix.Mkdev(loopMajor, uint32(idx)), AutoClear: info.Flags&unix.LO_FLAGS_AUTOCLEAR != 0}, true, nil
}

func loopIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "loop")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

// openLoop opens /dev/loopN, making the node when the kernel created the
// device but nothing made its node (a container's private /dev has no udev).
func openLoop(idx int, flags int) (*os.File, error) {
	p := "/dev/loop" + strconv.Itoa(idx)
	f, err := os.OpenFile(p, flags, 0)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join("/sys/block", "loop"+strconv.Itoa(idx))); serr != nil {
			return nil, err
		}
		if merr := unix.Mknod(p, unix.S_IFBLK|0o660, int(unix.Mkdev(loopMajor, uint32(idx)))); merr != nil && !errors.Is(merr, unix.EEXIST) {
			return nil, fmt.Errorf("make %s: %w", p, merr)
		}
		f, err = os.OpenFile(p, flags, 0)
	}
	return f, err
}

// attachLoop binds image to a free loop device with LOOP_CONFIGURE and
// returns the open device. The device has LO_FLAGS_AUTOCLEAR: it detaches
// itself when its last user goes, so a crash between attaching and
// mounting leaks nothing, and unmounting detaches it. The caller mounts it
// and then closes the returned file (which, before a mount, detaches it).
//
// The device does buffered I/O; the caller moves it to direct I/O once
// mounted (useDirectIO), or, for a fresh image, later (see attachAndMount).
func attachLoop(image string) (loopDevice, *os.File, error) {
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return loopDevice{}, nil, fmt.Errorf("open image: %w", err)
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return loopDevice{}, nil, fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer ctl.Close()
	var last error
	// Other processes take free devices too: LOOP_CONFIGURE on a device that
	// was taken between GET_FREE and CONFIGURE fails with EBUSY; take another.
	for attempt := 0; attempt < 50; attempt++ {
		idx, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return loopDevice{}, nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev, err := openLoop(idx, os.O_RDWR)
		if err != nil {
			last = err
			time.Sleep(time.Millisecond)
			continue
		}
		// 4 KiB logical blocks whatever the store: direct I/O needs the
		// loop's blocks aligned to the backing file's direct I/O alignment,
		// which is the store's block size for a reflinked file on XFS.
		cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Size: loopBlockSize}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err != nil {
			dev.Close()
			last = fmt.Errorf("LOOP_CONFIGURE loop%d: %w", idx, err)
			if errors.Is(err, unix.EBUSY) {
				continue
			}
			return loopDevice{}, nil, last
		}
		return loopDevice{Index: idx, Dev: unix.Mkdev(loopMajor, uint32(idx)), AutoClear: true}, dev, nil
	}
	return loopDevice{}, nil, fmt.Errorf("no free loop device: %w", last)
}

// useDirectIO makes loop device l do direct I/O on its backing file, if it
// does not yet (LOOP_SET_DIRECT_IO; the kernel first writes back what is
// dirty in the page cache): the image's data is then cached once, by the
// filesystem on the device, not a second time in the host's page cache.
// Kernels or backing filesystems that refuse it keep buffered I/O, which is
// correct, only cached twice.
func useDirectIO(ctx context.Context, l loopDevice) {
	if directIO(l) {
		return
	}
	f, err := openLoop(l.Index, os.O_RDONLY)
	if err != nil {
		return
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_DIRECT_IO, 1)
	klog.FromContext(ctx).V(4).Info("Direct I/O on loop device", "device", l.Path(), "err", err)
}

// directIO reports whether loop device l does direct I/O.
func directIO(l loopDevice) bool {
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/loop/dio", l.Index))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// detachLoop detaches a loop device (LOOP_CLR_FD). A device still in use is
// detached by the kernel when its last user goes. An unbound one is done.
func detachLoop(l loopDevice) error {
	f, err := openLoop(l.Index, os.O_RDONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("LOOP_CLR_FD %s: %w", l.Path(), err)
	}
	return nil
}

// setAutoClear makes a device attached without LO_FLAGS_AUTOCLEAR (by hand,
// or by an older version) detach itself when unmounted, as ours do.
func setAutoClear(f *os.File) error {
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		return err
	}
	if info.Flags&unix.LO_FLAGS_AUTOCLEAR != 0 {
		return nil
	}
	info.Flags |= unix.LO_FLAGS_AUTOCLEAR
	return unix.IoctlLoopSetStatus64(int(f.Fd()), info)
}

// refreshCapacity makes the loop device see its image's new size
// (LOOP_SET_CAPACITY).
func refreshCapacity(l loopDevice) error {
	f, err := openLoop(l.Index, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("LOOP_SET_CAPACITY %s: %w", l.Path(), err)
	}
	return nil
}
