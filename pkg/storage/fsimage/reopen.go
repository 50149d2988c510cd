package fsimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Reopen mounts again every volume that was open when the last process
// ended (its mount point is there), before the NFS server starts: after a
// reboot the mounts are gone, and an export whose path is an unmounted mount
// point would serve the store's own filesystem. A mount point whose volume
// cannot be opened is removed (it is an empty directory, never data), so
// that its export is left out rather than served wrong; the error is
// reported and reconciliation reports the volume as missing.
func (b *Backend) Reopen(ctx context.Context) (opened int, err error) {
	logger := klog.FromContext(ctx)
	entries, err := os.ReadDir(b.opts.MountDir)
	if err != nil {
		return 0, fmt.Errorf("list mount points in %s: %w", b.opts.MountDir, err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, tempPrefix) || checkName(name) != nil {
			continue
		}
		if _, err := b.Open(ctx, name); err != nil {
			mp := b.mountPoint(name)
			if mounted, _ := isMounted(mp); !mounted {
				if rmErr := os.Remove(mp); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
					err = errors.Join(err, rmErr)
				}
			}
			logger.Error(err, "Could not open a filesystem volume again; it is not served", "volume", name,
				"missing", errors.Is(err, storage.ErrNotFound))
			errs = append(errs, err)
			continue
		}
		opened++
	}
	return opened, errors.Join(errs...)
}
