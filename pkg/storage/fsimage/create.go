package fsimage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

const (
	// xfsMinSize: mkfs.xfs refuses filesystems under 300 MiB.
	xfsMinSize = 300 << 20
	// ext4MinSize keeps the journal (4 MiB at this size) a small part of
	// the volume.
	ext4MinSize = 32 << 20
	// blockSize: sizes are whole filesystem blocks.
	blockSize = 4096
)

// RoundSize is the size a volume of kind asked to be size bytes gets: at
// least the filesystem's minimum, in whole 4 KiB blocks.
func RoundSize(kind storage.Kind, size int64) int64 {
	minSize := int64(ext4MinSize)
	if kind == storage.XFS {
		minSize = xfsMinSize
	}
	size = max(size, minSize)
	return (size + blockSize - 1) / blockSize * blockSize
}

func (b *Backend) checkSpec(spec storage.Spec) error {
	if err := checkName(spec.Name); err != nil {
		return err
	}
	if spec.Kind != storage.XFS && spec.Kind != storage.Ext4 || !contains(b.opts.Kinds, spec.Kind) {
		return fmt.Errorf("volume %s: kind %q: %w", spec.Name, spec.Kind, storage.ErrUnsupported)
	}
	if spec.Size < 0 || spec.Size > 1<<60 {
		return fmt.Errorf("volume %s: size %d out of range", spec.Name, spec.Size)
	}
	if spec.UID < 0 || spec.GID < 0 {
		return fmt.Errorf("volume %s: negative owner %d:%d", spec.Name, spec.UID, spec.GID)
	}
	return nil
}

func contains(kinds []storage.Kind, k storage.Kind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// Create makes a sparse image under a temporary name, formats it, records
// the root directory's owner and mode on it, renames it to the volume's
// name (atomic: a volume's image is always complete), then opens it. Its
// loop device does buffered I/O until the next Open, which the caller makes
// once the volume is exported (see attachAndMount).
func (b *Backend) Create(ctx context.Context, spec storage.Spec) (storage.Volume, bool, error) {
	if err := b.checkSpec(spec); err != nil {
		return storage.Volume{}, false, err
	}
	unlock := b.locks.Lock(spec.Name)
	defer unlock()
	if v, ok, err := b.existing(ctx, spec); ok || err != nil {
		return v, false, err
	}
	size := RoundSize(spec.Kind, spec.Size)
	tmp, err := b.tempImage(size)
	if err != nil {
		return storage.Volume{}, false, err
	}
	defer os.Remove(tmp) // gone after the rename; removed on failure
	if err := mkfs(ctx, string(spec.Kind), tmp); err != nil {
		return storage.Volume{}, false, fmt.Errorf("create volume %s: %w", spec.Name, err)
	}
	v, err := b.publish(ctx, tmp, spec)
	if err != nil {
		return storage.Volume{}, false, err
	}
	klog.FromContext(ctx).V(2).Info("Created filesystem volume", "volume", spec.Name, "kind", spec.Kind, "size", v.Size)
	return v, true, nil
}

// existing opens the volume when its image exists already (a repeated
// call): ok is then true.
func (b *Backend) existing(ctx context.Context, spec storage.Spec) (storage.Volume, bool, error) {
	if _, err := os.Lstat(b.imagePath(spec.Name)); errors.Is(err, os.ErrNotExist) {
		return storage.Volume{}, false, nil
	}
	v, err := b.open(ctx, spec.Name, false)
	if err != nil {
		return storage.Volume{}, true, err
	}
	if v.Kind != spec.Kind {
		return storage.Volume{}, true, fmt.Errorf("volume %s exists as %s, not %s", spec.Name, v.Kind, spec.Kind)
	}
	return v, true, nil
}

// tempImage makes an empty sparse file of size bytes with a temporary name.
func (b *Backend) tempImage(size int64) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	p := filepath.Join(b.opts.ImageDir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("make image: %w", noSpace(err))
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		os.Remove(p)
		return "", fmt.Errorf("size image: %w", noSpace(err))
	}
	return p, nil
}

// publish gives a finished temporary image the volume's name and opens it.
// The rename never replaces a file; when opening fails, the image this
// call published is closed and removed again.
func (b *Backend) publish(ctx context.Context, tmp string, spec storage.Spec) (storage.Volume, error) {
	if err := unix.Setxattr(tmp, initXattr, initValue(spec), 0); err != nil {
		return storage.Volume{}, fmt.Errorf("record owner of volume %s: %w", spec.Name, err)
	}
	image := b.imagePath(spec.Name)
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, image, unix.RENAME_NOREPLACE); err != nil {
		return storage.Volume{}, fmt.Errorf("name image of volume %s: %w", spec.Name, err)
	}
	// Fresh: the image was made by this call, and no loop device backs it
	// (Clone detached the one it used).
	v, err := b.open(ctx, spec.Name, true)
	if err != nil {
		if cerr := b.close(ctx, spec.Name); cerr == nil {
			os.Remove(image)
		} else {
			klog.FromContext(ctx).Error(cerr, "Could not undo a failed create; the image stays", "image", image)
		}
		return storage.Volume{}, err
	}
	return v, nil
}

// noSpace makes ENOSPC from the store an ErrNoSpace.
func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", storage.ErrNoSpace, err)
	}
	return err
}
