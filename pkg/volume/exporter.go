package volume

import (
	"context"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
)

// Exporter is what the provisioner needs of the NFS server: the embedded
// ganesha's export manager, or one reached over D-Bus when ganesha runs
// elsewhere. Add and Remove are idempotent; Add of an ID that is live with
// other content fails with an error wrapping ganesha.ErrConflict. Update
// changes the options of a live export in place (clients, squash, access);
// it fails with an error wrapping ganesha.ErrUnsupported when that needs the
// export removed and added again.
type Exporter interface {
	Add(ctx context.Context, e ganesha.Export) error
	Update(ctx context.Context, e ganesha.Export) error
	Remove(ctx context.Context, id uint16) error
	List(ctx context.Context) ([]ganesha.Export, error)
}
