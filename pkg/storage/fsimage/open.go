package fsimage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// mountFlags: a volume's files are served over NFS, never run or opened as
// devices on this node.
const mountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// Open makes an existing volume ready to serve: it reuses the loop device
// and mount that exist (after a restart or a kill -9 they do), or else
// attaches the image, checks the filesystem and mounts it. ext4 is checked
// with e2fsck -p before every mount; XFS has no such check: mounting
// replays its log, which is XFS's recovery. Open never formats.
func (b *Backend) Open(ctx context.Context, name string) (storage.Volume, error) {
	if err := checkName(name); err != nil {
		return storage.Volume{}, err
	}
	unlock := b.locks.Lock(name)
	defer unlock()
	return b.open(ctx, name, false)
}

// open opens volume name. fresh says that its image was made by this call
// and no loop device has backed it since (see mountImage).
func (b *Backend) open(ctx context.Context, name string, fresh bool) (storage.Volume, error) {
	image := b.imagePath(name)
	kind, err := readKind(image)
	if err != nil {
		return storage.Volume{}, err
	}
	mp := b.mountPoint(name)
	if err := mountImage(ctx, image, mp, kind, "", fresh); err != nil {
		return storage.Volume{}, fmt.Errorf("open volume %s: %w", name, err)
	}
	if err := finishInit(image, mp); err != nil {
		return storage.Volume{}, fmt.Errorf("open volume %s: %w", name, err)
	}
	fi, err := os.Stat(image)
	if err != nil {
		return storage.Volume{}, fmt.Errorf("open volume %s: %w", name, err)
	}
	return storage.Volume{Name: name, Kind: kind, Path: mp, Size: fi.Size()}, nil
}

// readKind tells the filesystem in image from its superblock. A missing
// image is storage.ErrNotFound.
func readKind(image string) (storage.Kind, error) {
	f, err := os.Open(image)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("image %s: %w", image, storage.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	var sb [1024 + 64]byte
	if _, err := io.ReadFull(f, sb[:]); err != nil {
		return "", fmt.Errorf("read superblock of %s: %w", image, err)
	}
	switch {
	case string(sb[:4]) == "XFSB":
		return storage.XFS, nil
	case binary.LittleEndian.Uint16(sb[1024+56:]) == 0xEF53:
		return storage.Ext4, nil
	}
	return "", fmt.Errorf("image %s holds neither XFS nor ext4", image)
}

// mountImage makes image mounted at mp exactly once: an existing loop device
// of the image is reused (never a second one attached), an existing mount
// kept. data are the filesystem's mount options.
//
// fresh says that the image was made by the caller and no loop device has
// backed it since (it was never attached, or detached again): then, when
// its mount point does not exist yet, nothing can be mounted there and no
// loop device can back the image, so the scans of every mount and every
// loop device are skipped. With hundreds of volumes those scans were most
// of the cost of a create.
func mountImage(ctx context.Context, image, mp string, kind storage.Kind, data string, fresh bool) error {
	// Served already (a repeated call, a reconciliation pass, a restart)?
	// Asking the one loop device mounted here is much cheaper than reading
	// every mount.
	if lp, ok, err := servedAt(mp, image); err != nil || ok {
		if ok {
			thaw(mp) // a clone killed while this filesystem was frozen left it frozen
			// A fresh volume's device does buffered I/O until now.
			useDirectIO(ctx, lp)
		}
		return err
	}
	if fresh {
		err := os.Mkdir(mp, 0o700)
		if err == nil {
			return attachAndMount(ctx, image, mp, kind, data, loopDevice{}, false, true)
		}
		if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make mount point: %w", err)
		}
		// A mount point is there already: look at it the long way.
	}
	all, err := mounts()
	if err != nil {
		return err
	}
	here := mountsAt(all, mp)
	// A mount stacked over ours hides it from servedAt.
	if ok, err := mountedFrom(here, image); err != nil || ok {
		if ok {
			thaw(mp)
		}
		return err
	}
	lp, found, err := findLoop(image)
	if err != nil {
		return err
	}
	if found {
		if elsewhere := mountsOf(all, lp.Dev); len(elsewhere) > 0 {
			return fmt.Errorf("image %s is mounted at %s, not at %s", image, elsewhere[0].Point, mp)
		}
	}
	if len(here) > 0 {
		return fmt.Errorf("%s has another filesystem mounted (%s)", mp, here[0].Source)
	}
	if err := os.Mkdir(mp, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("make mount point: %w", err)
	}
	return attachAndMount(ctx, image, mp, kind, data, lp, found, false)
}

// attachAndMount mounts image at mp (an existing empty directory, which is
// removed again if this fails, so that no export serves it unmounted), on
// loop device lp when found (a device of the image that nothing has
// mounted), else on a newly attached one.
//
// The device then does direct I/O on the image: its data is cached once, by
// the filesystem on the device, not a second time in the host's page cache.
// A fresh image's device stays on buffered I/O until its next Open: its
// first readers, the mount and the NFS server's probe of the new filesystem
// for its UUID when it is exported (read ahead here, see warmProbe), then
// read what mkfs just wrote from the page cache. With direct I/O each of
// those reads went to the disk: during a burst of claims that made mounts
// slower, and each export, which ganesha makes one at a time, about twice
// as slow.
func attachAndMount(ctx context.Context, image, mp string, kind storage.Kind, data string, lp loopDevice, found, fresh bool) (err error) {
	logger := klog.FromContext(ctx)
	defer func() {
		if err != nil {
			os.Remove(mp)
		}
	}()
	var dev *os.File
	if found {
		// Attached but not mounted: a device without AUTOCLEAR (attached by
		// hand), or one another opener holds. Reuse it, and let it detach
		// itself once unmounted, as ours do.
		if dev, err = openLoop(lp.Index, os.O_RDWR); err != nil {
			return err
		}
		if err := setAutoClear(dev); err != nil {
			logger.Info("Could not set AUTOCLEAR on a reused loop device; Close detaches it", "device", lp.Path(), "err", err)
		}
		logger.V(2).Info("Reusing loop device", "image", image, "device", lp.Path())
	} else if lp, dev, err = attachLoop(image); err != nil {
		return err
	}
	// Until the mount holds the device, this file does: closing it before
	// the mount detaches an AUTOCLEAR device.
	defer dev.Close()
	if kind == storage.Ext4 {
		if err := e2fsckPreen(ctx, lp.Path(), false); err != nil {
			return fmt.Errorf("check filesystem of %s before mounting: %w", image, err)
		}
	}
	// libblkid (ganesha asks it for the filesystem UUID it puts in every
	// handle) trusts its cache of /dev/loopN for up to 200 s unless the
	// node is newer than the cache entry: without this, a loop device
	// reused for another image is given the previous image's UUID. (The
	// ganesha we run has no cache file; one run by others may.)
	now := time.Now()
	if err := os.Chtimes(lp.Path(), now, now); err != nil {
		return fmt.Errorf("touch %s: %w", lp.Path(), err)
	}
	if err := unix.Mount(lp.Path(), mp, string(kind), mountFlags, data); err != nil {
		return fmt.Errorf("mount %s (%s on %s) at %s: %w", kind, image, lp.Path(), mp, err)
	}
	if !fresh {
		useDirectIO(ctx, lp)
	} else {
		warmProbe(ctx, dev)
	}
	logger.V(4).Info("Mounted filesystem image", "image", image, "device", lp.Path(), "reused", found)
	return nil
}

// servedAt reports whether the filesystem mount point mp shows is image's:
// one on a loop device (stat gives its device number) whose backing file
// is image. With nothing mounted at mp, stat gives the store's own device,
// which does not back image either.
func servedAt(mp, image string) (loopDevice, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return loopDevice{}, false, nil
		}
		return loopDevice{}, false, fmt.Errorf("stat %s: %w", mp, err)
	}
	if unix.Major(st.Dev) != loopMajor {
		return loopDevice{}, false, nil
	}
	var ist unix.Stat_t
	if err := unix.Stat(image, &ist); err != nil {
		return loopDevice{}, false, fmt.Errorf("stat %s: %w", image, err)
	}
	return loopBacks(int(unix.Minor(st.Dev)), ist)
}

// mountedFrom reports whether one of the mounts is of a loop device whose
// backing file is image (same device and inode).
func mountedFrom(mnts []mountEntry, image string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", image, err)
	}
	for _, m := range mnts {
		if unix.Major(m.Dev) != loopMajor {
			continue
		}
		if _, ok, err := loopBacks(int(unix.Minor(m.Dev)), st); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// finishInit gives the root directory of a new volume the owner and mode
// recorded on its image, once.
func finishInit(image, mp string) error {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(image, initXattr, buf)
	if errors.Is(err, unix.ENODATA) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s of %s: %w", initXattr, image, err)
	}
	var uid, gid int
	var mode uint32
	parts := strings.Split(string(buf[:n]), ":")
	if len(parts) != 3 {
		return fmt.Errorf("bad %s on %s: %q", initXattr, image, buf[:n])
	}
	uid, err1 := strconv.Atoi(parts[0])
	gid, err2 := strconv.Atoi(parts[1])
	m, err3 := strconv.ParseUint(parts[2], 8, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return fmt.Errorf("bad %s on %s: %q", initXattr, image, buf[:n])
	}
	mode = uint32(m)
	if err := os.Lchown(mp, uid, gid); err != nil {
		return fmt.Errorf("chown volume root: %w", err)
	}
	// chmod after chown: chown clears setgid.
	if err := unix.Chmod(mp, mode); err != nil {
		return fmt.Errorf("chmod volume root: %w", err)
	}
	if err := unix.Removexattr(image, initXattr); err != nil && !errors.Is(err, unix.ENODATA) {
		return fmt.Errorf("clear %s of %s: %w", initXattr, image, err)
	}
	return nil
}

func initValue(spec storage.Spec) []byte {
	return []byte(fmt.Sprintf("%d:%d:%o", spec.UID, spec.GID, unixMode(spec.Mode)))
}

// unixMode turns os.FileMode permission, setuid/setgid and sticky bits
// into the kernel's.
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

// Close unmounts the volume (never lazily), removes its mount point and
// detaches its loop device.
func (b *Backend) Close(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	unlock := b.locks.Lock(name)
	defer unlock()
	return b.close(ctx, name)
}

func (b *Backend) close(ctx context.Context, name string) error {
	if err := b.unmountAll(ctx, b.mountPoint(name)); err != nil {
		return fmt.Errorf("close volume %s: %w", name, err)
	}
	return detachImage(b.imagePath(name))
}

// unmountAll unmounts everything mounted at mp and removes it. EBUSY is
// retried for a while: ganesha closes an export's files shortly after the
// export is removed.
func (b *Backend) unmountAll(ctx context.Context, mp string) error {
	deadline := time.Now().Add(b.opts.UnmountTimeout)
	for {
		all, err := mounts()
		if err != nil {
			return err
		}
		if len(mountsAt(all, mp)) == 0 {
			break
		}
		err = unix.Unmount(mp, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			continue
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unmount %s: %w (%w)", mp, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove mount point: %w", err)
	}
	return nil
}

// detachImage detaches a loop device of image that unmounting left (one
// without AUTOCLEAR); one still mounted elsewhere is an error.
func detachImage(image string) error {
	lp, found, err := findLoop(image)
	if errors.Is(err, os.ErrNotExist) || err == nil && !found {
		return nil
	}
	if err != nil {
		return err
	}
	all, err := mounts()
	if err != nil {
		return err
	}
	if m := mountsOf(all, lp.Dev); len(m) > 0 {
		return fmt.Errorf("image %s is still mounted at %s", image, m[0].Point)
	}
	return detachLoop(lp)
}

// FIFREEZE and FITHAW: _IOWR('X', 119, int) and _IOWR('X', 120, int).
const (
	ioctlFIFREEZE = 0xC0045877
	ioctlFITHAW   = 0xC0045878
)

// freeze freezes the filesystem mounted at mp and returns the function that
// thaws it. The thaw runs even when the caller panics (it is deferred).
func freeze(mp string) (thawFn func() error, err error) {
	f, err := os.Open(mp)
	if err != nil {
		return nil, fmt.Errorf("open %s to freeze it: %w", mp, err)
	}
	if err := unix.IoctlSetInt(int(f.Fd()), ioctlFIFREEZE, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("FIFREEZE %s: %w", mp, err)
	}
	return func() error {
		defer f.Close()
		if err := unix.IoctlSetInt(int(f.Fd()), ioctlFITHAW, 0); err != nil {
			return fmt.Errorf("FITHAW %s: %w", mp, err)
		}
		return nil
	}, nil
}

// thaw thaws the filesystem at mp if it is frozen; EINVAL means it was not.
func thaw(mp string) {
	f, err := os.Open(mp)
	if err != nil {
		return
	}
	defer f.Close()
	unix.IoctlSetInt(int(f.Fd()), ioctlFITHAW, 0)
}

// sweep undoes what interrupted calls left: temporary images (unmounted
// wherever they are mounted, detached, deleted), temporary mount points,
// and frozen volumes.
func (b *Backend) sweep(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	mps, err := os.ReadDir(b.opts.MountDir)
	if err != nil {
		return err
	}
	for _, e := range mps {
		mp := b.mountPoint(e.Name())
		if strings.HasPrefix(e.Name(), tempPrefix) {
			logger.Info("Removing the mount point of an interrupted create or clone", "path", mp)
			if err := b.unmountAll(ctx, mp); err != nil {
				return err
			}
			continue
		}
		thaw(mp)
	}
	imgs, err := os.ReadDir(b.opts.ImageDir)
	if err != nil {
		return err
	}
	for _, e := range imgs {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		image := b.imagePath(e.Name())
		logger.Info("Removing the image of an interrupted create or clone", "path", image)
		if lp, found, err := findLoop(image); err == nil && found {
			all, err := mounts()
			if err != nil {
				return err
			}
			for _, m := range mountsOf(all, lp.Dev) {
				if err := b.unmountAll(ctx, m.Point); err != nil {
					return err
				}
			}
			if err := detachLoop(lp); err != nil {
				return err
			}
		}
		if err := os.Remove(image); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
