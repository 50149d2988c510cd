package volume

import (
	"context"
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)

// ShouldDelete lets the library delete only volumes of this store, and only
// after start-up reconciliation.
func (p *Provisioner) ShouldDelete(ctx context.Context, pv *v1.PersistentVolume) bool {
	return p.Reconciled() && pv.Annotations[AnnIdentity] == p.opts.Identity
}

// Delete removes the volume's export and then, as its class said, deletes,
// keeps or archives its directory. It needs only the PV, because the library
// also calls it for PVs that were never saved. Volumes of another store get
// an IgnoredError and are left alone. Calling it again is harmless.
func (p *Provisioner) Delete(ctx context.Context, pv *v1.PersistentVolume) error {
	v, err := p.volumeOf(pv)
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx).WithValues("PV", pv.Name, "directory", v.dir, "exportID", v.id)

	unlock := p.locks.lock(pv.Name)
	defer unlock()

	// Export first: ganesha keeps files open, and deleting data it still
	// serves would not free the space.
	if err := p.unexport(ctx, pv.Name, v); err != nil {
		return err
	}
	switch v.onDelete {
	case OnDeleteRetain:
		logger.Info("Deleted volume; kept its directory (onDelete=retain)")
	case OnDeleteArchive:
		name, err := p.opts.Store.Archive(v.dir, p.opts.Clock.Now())
		if err != nil {
			return err
		}
		logger.Info("Deleted volume; archived its directory (onDelete=archive)", "archive", name)
	default:
		if err := p.opts.Store.Remove(v.dir); err != nil {
			return err
		}
		logger.Info("Deleted volume and its directory")
	}
	p.reg.release(pv.Name)
	return nil
}

// unexport removes the export of volume v unless its ID now belongs to
// another volume, which can happen only after a repaired duplicate.
func (p *Provisioner) unexport(ctx context.Context, pvName string, v pvVolume) error {
	if owner, ok := p.reg.ownerOf(v.id); ok && owner != pvName {
		klog.FromContext(ctx).Info("Export ID now belongs to another volume; leaving that export alone", "PV", pvName, "exportID", v.id, "owner", owner)
		return nil
	}
	if err := p.opts.Exporter.Remove(ctx, v.id); err != nil {
		return fmt.Errorf("remove export %d of %s: %w", v.id, pvName, err)
	}
	return nil
}

// pvVolume is what a PV's annotations say about its volume.
type pvVolume struct {
	id         uint16
	dir        string
	onDelete   OnDelete
	rootSquash bool
}

// volumeOf reads and checks the annotations of a PV this store made. A PV of
// another store, or none of ours at all, gives an IgnoredError.
func (p *Provisioner) volumeOf(pv *v1.PersistentVolume) (pvVolume, error) {
	a := pv.Annotations
	if a[AnnIdentity] != p.opts.Identity {
		return pvVolume{}, &controller.IgnoredError{Reason: fmt.Sprintf("PV %s was not made from this provisioner's store (identity %q, ours %q)", pv.Name, a[AnnIdentity], p.opts.Identity)}
	}
	id, err := strconv.ParseUint(a[AnnExportID], 10, 16)
	if err != nil || id == 0 {
		return pvVolume{}, fmt.Errorf("PV %s: annotation %s=%q is not an export ID from 1 to 65535", pv.Name, AnnExportID, a[AnnExportID])
	}
	dir := a[AnnDirectory]
	if err := checkDirectoryName(dir); err != nil {
		return pvVolume{}, fmt.Errorf("PV %s: annotation %s: %w", pv.Name, AnnDirectory, err)
	}
	onDelete := OnDeleteDelete
	if s, ok := a[AnnOnDelete]; ok {
		if onDelete, err = parseOnDelete(s); err != nil {
			return pvVolume{}, fmt.Errorf("PV %s: annotation %s=%q: %w", pv.Name, AnnOnDelete, s, err)
		}
	}
	rootSquash, _ := strconv.ParseBool(a[AnnRootSquash])
	return pvVolume{id: uint16(id), dir: dir, onDelete: onDelete, rootSquash: rootSquash}, nil
}
