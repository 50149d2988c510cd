package fsimage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/internal/fscopy"
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
	defer b.locks.LockPair(src, dst.Name)()
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
// filesystem is frozen (when it is mounted: a closed one is consistent):
// a reflink where the store supports it, else a sparse-aware copy
// (internal/fscopy).
func (b *Backend) copyImage(ctx context.Context, src string, progress storage.Progress) (tmp string, reflinked bool, err error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp = filepath.Join(b.opts.ImageDir, tempPrefix+hex.EncodeToString(rnd[:]))
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
		reflinked, err = fscopy.CopyFile(ctx, tmp, b.imagePath(src), progress)
		thawOnce()
	} else {
		reflinked, err = fscopy.CopyFile(ctx, tmp, b.imagePath(src), progress)
	}
	if err != nil {
		return "", false, fmt.Errorf("copy image of %s: %w", src, noSpace(err))
	}
	return tmp, reflinked, nil
}

// renewXFS gives a cloned XFS image its own UUID. The image's log still
// needs replaying (it was copied from a mounted filesystem), which
// xfs_admin refuses to do: mount it once with nouuid (its source, with the
// same UUID, is mounted), which replays the log; grow it then when it was
// made larger; unmount; then xfs_admin -U generate.
func (b *Backend) renewXFS(ctx context.Context, tmp string, grow bool) error {
	mp := filepath.Join(b.opts.MountDir, filepath.Base(tmp))
	if err := mountImage(ctx, tmp, mp, storage.XFS, "nouuid", false); err != nil {
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
