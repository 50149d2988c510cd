package fsimage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Expand grows the volume's image and then its filesystem to size (rounded
// as Create rounds). Each step is idempotent, so a growth interrupted by a
// crash is finished by calling Expand again.
//
// XFS grows online in either mode: image, loop device capacity
// (LOOP_SET_CAPACITY), xfs_growfs on the mount point. ext4 grows online
// only with CAP_SYS_RESOURCE (resize2fs on a mounted filesystem needs it);
// without it an Online call changes nothing and returns ErrOfflineRequired,
// and an Offline call unmounts the volume, grows the image, checks the
// filesystem (e2fsck -f -p, which resize2fs requires) and resizes it; the
// caller opens it again.
func (b *Backend) Expand(ctx context.Context, name string, size int64, mode storage.ExpandMode) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	unlock := b.locks.Lock(name)
	defer unlock()
	image := b.imagePath(name)
	kind, err := readKind(image)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(image)
	if err != nil {
		return 0, err
	}
	cur, want := fi.Size(), RoundSize(kind, size)
	if want < cur {
		return 0, fmt.Errorf("volume %s is %d bytes, cannot shrink it to %d: %w", name, cur, want, storage.ErrUnsupported)
	}
	if kind == storage.XFS {
		err = b.expandXFS(ctx, name, want)
	} else {
		err = b.expandExt4(ctx, name, cur, want, mode)
	}
	if err != nil {
		return 0, err
	}
	if want > cur {
		klog.FromContext(ctx).V(2).Info("Expanded filesystem volume", "volume", name, "kind", kind, "from", cur, "to", want)
	}
	return max(want, cur), nil
}

func (b *Backend) expandXFS(ctx context.Context, name string, want int64) error {
	image, mp := b.imagePath(name), b.mountPoint(name)
	mounted, err := isMounted(mp)
	if err != nil {
		return err
	}
	if !mounted {
		// xfs_growfs works on mounted filesystems only; leave the volume
		// closed as it was found.
		if _, err := b.open(ctx, name, false); err != nil {
			return err
		}
		defer func() {
			if err := b.close(ctx, name); err != nil {
				klog.FromContext(ctx).Error(err, "Could not close a volume opened to grow it", "volume", name)
			}
		}()
	}
	if err := growImage(image, want); err != nil {
		return err
	}
	lp, found, err := findLoop(image)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("volume %s: mounted, but no loop device has its image", name)
	}
	if err := refreshCapacity(lp); err != nil {
		return err
	}
	if _, err := run(ctx, nil, "xfs_growfs", "-d", mp); err != nil {
		return fmt.Errorf("grow volume %s: %w", name, err)
	}
	return nil
}

func (b *Backend) expandExt4(ctx context.Context, name string, cur, want int64, mode storage.ExpandMode) error {
	image, mp := b.imagePath(name), b.mountPoint(name)
	mounted, err := isMounted(mp)
	if err != nil {
		return err
	}
	if mounted && mode == storage.Online {
		fsSize, err := ext4Size(image)
		if err != nil {
			return err
		}
		if want <= cur && fsSize >= cur {
			return nil
		}
		if !hasCapability(capSysResource) {
			return fmt.Errorf("volume %s: online ext4 growth needs CAP_SYS_RESOURCE: %w", name, storage.ErrOfflineRequired)
		}
		return b.growExt4Online(ctx, name, cur, want)
	}
	if mounted {
		if err := b.close(ctx, name); err != nil {
			return err
		}
	}
	if err := growImage(image, want); err != nil {
		return err
	}
	if err := e2fsckPreen(ctx, image, true); err != nil {
		return fmt.Errorf("grow volume %s: %w", name, err)
	}
	if _, err := run(ctx, nil, "resize2fs", image); err != nil {
		return fmt.Errorf("grow volume %s: %w", name, err)
	}
	return nil
}

// growExt4Online grows a mounted ext4 filesystem; when the kernel refuses
// (no CAP_SYS_RESOURCE after all), the image gets its old size back and
// ErrOfflineRequired is returned.
func (b *Backend) growExt4Online(ctx context.Context, name string, cur, want int64) error {
	image := b.imagePath(name)
	lp, found, err := findLoop(image)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("volume %s: mounted, but no loop device has its image", name)
	}
	if err := growImage(image, want); err != nil {
		return err
	}
	if err := refreshCapacity(lp); err != nil {
		return err
	}
	if _, err := run(ctx, nil, "resize2fs", lp.Path()); err != nil {
		if strings.Contains(err.Error(), "Permission denied") || strings.Contains(err.Error(), "Operation not permitted") {
			if want > cur {
				os.Truncate(image, cur)
				refreshCapacity(lp)
			}
			return fmt.Errorf("volume %s: %v: %w", name, err, storage.ErrOfflineRequired)
		}
		return fmt.Errorf("grow volume %s: %w", name, err)
	}
	return nil
}

// growImage makes image size bytes unless it is larger (a sparse growth).
func growImage(image string, size int64) error {
	fi, err := os.Stat(image)
	if err != nil {
		return err
	}
	if fi.Size() >= size {
		return nil
	}
	if err := os.Truncate(image, size); err != nil {
		return fmt.Errorf("grow image: %w", noSpace(err))
	}
	return nil
}

// ext4Size reads the filesystem's size from the superblock of image. It is
// exact for an unmounted filesystem; for a mounted one it is the size at
// the last resize, which only an offline resize2fs changes here.
func ext4Size(image string) (int64, error) {
	f, err := os.Open(image)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read ext4 superblock: %w", err)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:]))
	if binary.LittleEndian.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return int64(blocks) << (10 + binary.LittleEndian.Uint32(sb[24:])), nil
}

func isMounted(mp string) (bool, error) {
	all, err := mounts()
	if err != nil {
		return false, err
	}
	return len(mountsAt(all, mp)) > 0, nil
}
