package directory

import (
	"context"

	"github.com/nfs-provisioner/nfs-provisioner/internal/fscopy"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// copyTree copies a live directory volume for a clone: owners, modes,
// times, xattrs, hard links and holes, never following a symlink.
func copyTree(ctx context.Context, dst, src string, progress storage.Progress) error {
	_, err := fscopy.CopyTree(ctx, dst, src, fscopy.TreeOptions{Progress: progress})
	return err
}
