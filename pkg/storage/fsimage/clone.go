package fsimage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Clone makes dst a copy of volume src: the source is frozen (FIFREEZE)
// while its image is reflinked (FICLONE, where the store supports it) or
// else copied sparse-aware, so the copy is crash-consistent; then thawed.
// The copy then gets a filesystem UUID of its own (two filesystems with
// one UUID cannot both be mounted, and would be one filesystem to ganesha's
// handles), is grown to dst.Size when that is larger, and is published and
// opened as Create does, with dst's owner and mode on its root directory.
func (b *Backend) Clone(ctx context.Context, src string, dst storage.Spec, progress storage.Progress) (storage.Volume, bool, error) {
	logger := klog.FromContext(ctx)
	if err := checkName(src); err != nil {
		return storage.Volume{}, false, err
	}
	if err := b.checkSpec(dst); err != nil {
		return storage.Volume{}, false, err
	}
	if src == dst.Name {
		return storage.Volume{}, false, fmt.Errorf("clone %s onto itself", src)
	}
	first, second := src, dst.Name
	if second < first {
		first, second = second, first
	}
	defer b.locks.lock(first)()
	defer b.locks.lock(second)()
	if v, ok, err := b.existing(ctx, dst); ok || err != nil {
		return v, false, err
	}
	srcImage := b.imagePath(src)
	kind, err := readKind(srcImage)
	if err != nil {
		return storage.Volume{}, false, fmt.Errorf("clone source %s: %w", src, err)
	}
	if kind != dst.Kind {
		return storage.Volume{}, false, fmt.Errorf("clone %s volume %s as %s: %w", kind, src, dst.Kind, storage.ErrUnsupported)
	}
	tmp, reflinked, err := b.copyImage(ctx, src, progress)
	if err != nil {
		return storage.Volume{}, false, err
	}
	defer os.Remove(tmp) // gone after the rename; removed on failure
	fi, err := os.Stat(tmp)
	if err != nil {
		return storage.Volume{}, false, err
	}
	want := max(RoundSize(kind, dst.Size), fi.Size())
	if err := growImage(tmp, want); err != nil {
		return storage.Volume{}, false, err
	}
	if kind == storage.XFS {
		err = b.renewXFS(ctx, tmp, want > fi.Size())
	} else {
		err = renewExt4(ctx, tmp, want > fi.Size())
	}
	if err != nil {
		return storage.Volume{}, false, fmt.Errorf("clone %s as %s: %w", src, dst.Name, err)
	}
	v, err := b.publish(ctx, tmp, dst)
	if err != nil {
		return storage.Volume{}, false, err
	}
	logger.V(2).Info("Cloned filesystem volume", "source", src, "volume", dst.Name, "reflink", reflinked, "size", v.Size)
	return v, true, nil
}

// copyImage copies src's image to a new temporary image while src's
// filesystem is frozen (when it is mounted: a closed one is consistent).
func (b *Backend) copyImage(ctx context.Context, src string, progress storage.Progress) (tmp string, reflinked bool, err error) {
	in, err := os.Open(b.imagePath(src))
	if err != nil {
		return "", false, fmt.Errorf("clone source %s: %w", src, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", false, err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp = filepath.Join(b.opts.ImageDir, tempPrefix+hex.EncodeToString(rnd[:]))
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("make image: %w", noSpace(err))
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	mounted, err := isMounted(b.mountPoint(src))
	if err != nil {
		return "", false, err
	}
	if mounted {
		thawFn, err := freeze(b.mountPoint(src))
		if err != nil {
			return "", false, err
		}
		var once sync.Once
		thawOnce := func() {
			once.Do(func() {
				if err := thawFn(); err != nil {
					klog.FromContext(ctx).Error(err, "Could not thaw a clone's source", "volume", src)
				}
			})
		}
		// Deferred, so that a panic in the copy thaws too.
		defer thawOnce()
		reflinked, err = copyFrozen(ctx, out, in, fi.Size(), progress)
		thawOnce()
	} else {
		reflinked, err = copyFrozen(ctx, out, in, fi.Size(), progress)
	}
	if err != nil {
		return "", false, fmt.Errorf("copy image of %s: %w", src, noSpace(err))
	}
	return tmp, reflinked, nil
}

// copyFrozen reflinks in to out when the store can (FICLONE), and copies
// it sparse-aware when it cannot.
func copyFrozen(ctx context.Context, out, in *os.File, size int64, progress storage.Progress) (bool, error) {
	err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
	if err == nil {
		if progress != nil {
			progress(size, size)
		}
		return true, nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return false, fmt.Errorf("FICLONE: %w", err)
	}
	return false, sparseCopyFile(ctx, out, in, size, progress)
}

// sparseCopyFile copies size bytes of in to out, only the data extents
// (SEEK_DATA/SEEK_HOLE), so holes stay holes. internal/fscopy's
// sparse-aware copy replaces this function when the branches merge.
func sparseCopyFile(ctx context.Context, out, in *os.File, size int64, progress storage.Progress) error {
	const chunk = 8 << 20
	var done int64
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("SEEK_DATA: %w", err)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("SEEK_HOLE: %w", err)
		}
		for pos := data; pos < hole; {
			roff, woff := pos, pos
			n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(chunk, hole-pos)), 0)
			if err != nil {
				return fmt.Errorf("copy_file_range: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("copy_file_range: source ended at %d of %d bytes", pos, size)
			}
			pos += int64(n)
			done += int64(n)
			if progress != nil {
				progress(done, size)
			}
		}
		off = hole
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	if progress != nil {
		progress(size, size)
	}
	return nil
}

// renewXFS gives a cloned XFS image its own UUID. The image's log still
// needs replaying (it was copied from a mounted filesystem), which
// xfs_admin refuses to do: mount it once with nouuid (its source, with the
// same UUID, is mounted), which replays the log; grow it then when it was
// made larger; unmount; then xfs_admin -U generate.
func (b *Backend) renewXFS(ctx context.Context, tmp string, grow bool) error {
	mp := filepath.Join(b.opts.MountDir, filepath.Base(tmp))
	if err := mountImage(ctx, tmp, mp, storage.XFS, "nouuid"); err != nil {
		return err
	}
	var growErr error
	if grow {
		_, growErr = run(ctx, nil, "xfs_growfs", "-d", mp)
	}
	if err := b.unmountAll(ctx, mp); err != nil {
		return err
	}
	if err := detachImage(tmp); err != nil {
		return err
	}
	if growErr != nil {
		return growErr
	}
	_, err := run(ctx, nil, "xfs_admin", "-U", "generate", tmp)
	return err
}

// renewExt4 gives a cloned ext4 image its own UUID: e2fsck replays the
// journal and checks it (tune2fs requires a checked filesystem), resize2fs
// grows it when it was made larger, tune2fs -U random.
func renewExt4(ctx context.Context, tmp string, grow bool) error {
	if err := e2fsckPreen(ctx, tmp, true); err != nil {
		return err
	}
	if grow {
		if _, err := run(ctx, nil, "resize2fs", tmp); err != nil {
			return err
		}
	}
	_, err := run(ctx, nil, "tune2fs", "-U", "random", tmp)
	return err
}
