package volume

import (
	"context"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
)

// ShouldProvision refuses claims while start-up reconciliation runs, so no
// new export races the repair of the old ones. The library asks again later.
func (p *Provisioner) ShouldProvision(ctx context.Context, claim *v1.PersistentVolumeClaim) bool {
	return p.Reconciled()
}

// Provision makes the directory, exports it and returns the PV. A second call
// for the same PV name reuses both. Any failure undoes what this call made,
// so bad input leaves no directory and no export behind.
func (p *Provisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	claim := opts.PVC
	logger := klog.FromContext(ctx).WithValues("PVC", klog.KObj(claim), "PV", opts.PVName)

	params, err := checkRequest(opts)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}

	unlock := p.locks.lock(opts.PVName)
	defer unlock()

	// A repeated call reuses what the first one made: same directory, no
	// limits to check again.
	dir := DirectoryName(claim.Namespace, claim.Name, opts.PVName)
	if rec, known := p.reg.lookup(opts.PVName); known {
		dir = rec.dir
	} else if err := p.checkRoom(claim.Spec.Resources.Requests[v1.ResourceStorage]); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	created, err := p.opts.Store.Create(dir, params.UID, params.GID, params.Mode)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	id, err := p.reg.reserve(opts.PVName, dir)
	if err == nil {
		err = p.export(ctx, opts.PVName, dir, id, params.RootSquash)
	}
	if err != nil {
		p.reg.release(opts.PVName)
		if created {
			if rmErr := p.opts.Store.Remove(dir); rmErr != nil {
				logger.Error(rmErr, "Could not remove the directory of a failed provision", "directory", dir)
			}
		}
		return nil, controller.ProvisioningFinished, err
	}

	pv := p.buildPV(opts, params, dir, id)
	logger.Info("Provisioned volume", "directory", dir, "exportID", id, "server", p.opts.Server, "path", PseudoPath(dir))
	return pv, controller.ProvisioningFinished, nil
}

// checkRoom refuses a new volume past -max-exports or larger than the
// store's free space.
func (p *Provisioner) checkRoom(request resource.Quantity) error {
	if p.opts.MaxExports >= 0 && p.reg.count() >= p.opts.MaxExports {
		return fmt.Errorf("the provisioner's limit of %d exports (-max-exports) is reached", p.opts.MaxExports)
	}
	free, err := p.opts.Store.Free()
	if err != nil {
		return err
	}
	if uint64(request.Value()) > free {
		return fmt.Errorf("requested %s is more than the %d bytes free in the export dir %s", request.String(), free, p.opts.Store.Root())
	}
	return nil
}

// export adds the export of dir under id. When ganesha serves id for
// something else, which can happen when exports are managed outside this
// process, the ID is marked foreign and the next free one is tried.
func (p *Provisioner) export(ctx context.Context, pv, dir string, id uint16, rootSquash bool) error {
	for attempt := 0; ; attempt++ {
		e, err := p.exportFor(dir, id, rootSquash)
		if err != nil {
			return err
		}
		err = p.opts.Exporter.Add(ctx, e)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ganesha.ErrConflict) || attempt >= 16 {
			return fmt.Errorf("export %s: %w", e.Path, err)
		}
		klog.FromContext(ctx).Info("Export ID is taken in ganesha by something else; trying another", "exportID", id, "err", err)
		p.reg.release(pv)
		p.reg.markForeign(id)
		if id, err = p.reg.reserve(pv, dir); err != nil {
			return err
		}
	}
}

// exportFor is the export of directory dir.
func (p *Provisioner) exportFor(dir string, id uint16, rootSquash bool) (ganesha.Export, error) {
	path, err := p.opts.Store.Path(dir)
	if err != nil {
		return ganesha.Export{}, err
	}
	squash := ganesha.NoRootSquash
	if rootSquash {
		squash = ganesha.RootSquash
	}
	return ganesha.Export{
		ID:      id,
		Path:    path,
		Pseudo:  PseudoPath(dir),
		Access:  ganesha.AccessRW,
		Squash:  squash,
		Clients: p.opts.Clients,
	}, nil
}

// checkRequest rejects what this provisioner cannot honour, with a message
// that names the problem; the library turns it into a Warning event.
func checkRequest(opts controller.ProvisionOptions) (Params, error) {
	claim := opts.PVC
	if claim.Spec.Selector != nil {
		return Params{}, fmt.Errorf("claim.spec.selector is not supported: a dynamically provisioned volume cannot match a label selector")
	}
	if ds := claim.Spec.DataSource; ds != nil {
		return Params{}, fmt.Errorf("claim.spec.dataSource (%s %s) is not supported yet: cloning and restoring are not implemented, and an empty volume would silently lose the data", ds.Kind, ds.Name)
	}
	if ds := claim.Spec.DataSourceRef; ds != nil {
		return Params{}, fmt.Errorf("claim.spec.dataSourceRef (%s %s) is not supported yet: cloning and restoring are not implemented, and an empty volume would silently lose the data", ds.Kind, ds.Name)
	}
	if m := claim.Spec.VolumeMode; m != nil && *m == v1.PersistentVolumeBlock {
		return Params{}, fmt.Errorf("volumeMode Block is not supported: NFS volumes are filesystems")
	}
	if _, ok := claim.Spec.Resources.Requests[v1.ResourceStorage]; !ok {
		return Params{}, fmt.Errorf("claim requests no storage size")
	}
	if opts.StorageClass == nil {
		return Params{}, fmt.Errorf("claim has no StorageClass")
	}
	return ParseParams(opts.StorageClass.Parameters)
}
