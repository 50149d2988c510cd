package directory

import (
	"context"
	"fmt"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// copyTree is replaced by internal/fscopy's tree copy.
func copyTree(ctx context.Context, dst, src string, progress storage.Progress) error {
	return fmt.Errorf("copy %s: %w", src, storage.ErrUnsupported)
}
