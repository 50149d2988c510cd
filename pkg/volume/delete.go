package volume

import (
	"context"
	"fmt"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Event reasons on PVs.
const (
	ReasonOwnershipRefused = "VolumeOwnershipRefused"
	ReasonBadAnnotations   = "VolumeAnnotationsInvalid"
	ReasonVolumeMissing    = "VolumeMissing"
	ReasonKeptOnDelete     = "VolumeKept"
)

// ShouldDelete lets the library delete only volumes of this store, and only
// after a reconciliation pass.
func (p *Provisioner) ShouldDelete(ctx context.Context, pv *v1.PersistentVolume) bool {
	return p.Reconciled() && p.Owns(pv)
}

// Delete removes the volume's export and then, as its class said, deletes,
// keeps or archives its data. This is the one way data goes: the user
// deleted exactly this PV's claim (or the PV). It needs only the PV, because
// the library also calls it for PVs that were never saved. A PV that does not
// own the volume it names is refused and nothing is touched; a PV whose
// onDelete cannot be read keeps its data. Volumes of another store get an
// IgnoredError. Calling it again is harmless.
func (p *Provisioner) Delete(ctx context.Context, pv *v1.PersistentVolume) (err error) {
	start := time.Now()
	defer func() { p.observe(OpDelete, start, err) }()
	v, problems, err := p.volumeOf(pv)
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx).WithValues("PV", pv.Name, "volume", v.name, "kind", v.kind, "exportID", v.id)

	defer p.share()()
	unlock := p.locks.lock(pv.Name)
	defer unlock()

	if err := p.checkOwner(pv.Name, v.name); err != nil {
		p.warn(pv, ReasonOwnershipRefused, err.Error()+"; nothing was deleted")
		return err
	}
	// Not p.backend: deleting needs no check that new volumes can be made.
	backend, ok := p.backends[v.kind]
	if !ok {
		return fmt.Errorf("PV %s: %s volumes are not handled by this provisioner; nothing was deleted", pv.Name, v.kind)
	}

	// Export first: ganesha keeps files open, and deleting data it still
	// serves would not free the space.
	if err := p.unexport(ctx, pv.Name, v); err != nil {
		return err
	}
	onDelete := v.onDelete
	if len(problems) > 0 {
		onDelete = OnDeleteRetain
		p.warn(pv, ReasonKeptOnDelete, fmt.Sprintf("kept volume %s: its annotations could not be read (%v), so the data is not removed", v.name, problems))
	}
	switch onDelete {
	case OnDeleteRetain:
		if err := backend.Close(ctx, v.name); err != nil {
			return err
		}
		if err := p.release(v.name, pv.Name, v.kind); err != nil {
			return err
		}
		logger.Info("Deleted volume; kept its data (onDelete=retain)")
	case OnDeleteArchive:
		name, err := backend.Archive(ctx, v.name, p.opts.Clock.Now())
		if err != nil {
			return err
		}
		if err := p.opts.State.DropOwner(v.name); err != nil {
			return err
		}
		logger.Info("Deleted volume; archived its data (onDelete=archive)", "archive", name)
	default:
		if err := backend.Remove(ctx, v.name); err != nil {
			return err
		}
		if err := p.opts.State.DropOwner(v.name); err != nil {
			return err
		}
		logger.Info("Deleted volume and its data")
	}
	p.reg.release(pv.Name)
	p.deleted.Store(pv.Name, true)
	p.handedOver.Delete(v.name)
	return nil
}

// release marks a kept volume as no longer served in the ledger, so that
// reconciliation does not serve it again while the PV object is still
// there; the record stays, so a PV restored under the same name can have it
// back.
func (p *Provisioner) release(name, pv string, kind storage.Kind) error {
	return p.updateOwner(name, pv, kind, func(o *Owner) { o.Released, o.Provisioning = true, false })
}

// checkOwner fails unless volume name belongs to PV pv: the store's ledger
// says so, or, for a volume made before the ledger, the name was made for
// this PV and no other PV holds it.
func (p *Provisioner) checkOwner(pv, name string) error {
	o, ok, err := p.opts.State.Owner(name)
	if err != nil {
		return err
	}
	if ok {
		if o.PV != pv {
			return fmt.Errorf("PV %s names volume %s, which belongs to PV %s", pv, name, o.PV)
		}
		return nil
	}
	if !boundTo(name, pv) {
		return fmt.Errorf("PV %s names volume %s, which was not made for it (a volume's name ends with its PV's name)", pv, name)
	}
	for other, rec := range p.reg.snapshot() {
		if rec.name == name && other != pv {
			return fmt.Errorf("PV %s names volume %s, which PV %s names too", pv, name, other)
		}
	}
	return nil
}

// unexport removes the export of volume v, unless its ID now serves
// something else: another PV's volume, or a path that is not v's.
func (p *Provisioner) unexport(ctx context.Context, pvName string, v pvVolume) error {
	if v.id == 0 {
		return nil
	}
	if owner, ok := p.reg.ownerOf(v.id); ok && owner != pvName {
		klog.FromContext(ctx).Info("Export ID now belongs to another volume; leaving that export alone", "PV", pvName, "exportID", v.id, "owner", owner)
		return nil
	}
	live, err := p.opts.Exporter.List(ctx)
	if err != nil {
		return err
	}
	for _, e := range live {
		if e.ID != v.id {
			continue
		}
		if e.Pseudo != "" && e.Pseudo != PseudoPath(v.name) {
			klog.FromContext(ctx).Info("Export ID serves another path; leaving that export alone", "PV", pvName, "exportID", v.id, "pseudo", e.Pseudo)
			return nil
		}
		if err := p.opts.Exporter.Remove(ctx, v.id); err != nil {
			return fmt.Errorf("remove export %d of %s: %w", v.id, pvName, err)
		}
	}
	return nil
}

// pvVolume is what a PV's annotations say about its volume.
type pvVolume struct {
	id         uint16 // 0 when the annotation cannot be read
	name       string
	kind       storage.Kind
	onDelete   OnDelete
	rootSquash bool
}

// volumeOf reads the annotations of a PV this store made. A PV of another
// store gives an IgnoredError; a PV whose volume name cannot be read gives an
// error. Other annotations that cannot be read (a typo, or a value from a
// newer release) are problems, not errors: the volume is still served and
// never reaped, on the safe side of each (export ID found from the live
// export, root squashed, data kept on delete).
func (p *Provisioner) volumeOf(pv *v1.PersistentVolume) (v pvVolume, problems []string, err error) {
	a := pv.Annotations
	if !p.Owns(pv) {
		return pvVolume{}, nil, &controller.IgnoredError{Reason: fmt.Sprintf("PV %s was not made from this provisioner's store (identity %q, ours %q)", pv.Name, a[AnnIdentity], p.opts.Identity)}
	}
	v.name = a[AnnDirectory]
	if err := storage.CheckName(v.name); err != nil {
		return pvVolume{}, nil, fmt.Errorf("PV %s: annotation %s: %w", pv.Name, AnnDirectory, err)
	}
	v.kind = storage.Directory
	if s, ok := a[AnnKind]; ok {
		switch k := storage.Kind(s); k {
		case storage.Directory, storage.XFS, storage.Ext4, storage.CephFS:
			v.kind = k
		default:
			return pvVolume{}, nil, fmt.Errorf("PV %s: annotation %s=%q is not a volume kind this release knows (directory, xfs, ext4, cephfs)", pv.Name, AnnKind, s)
		}
	}
	if id, err := strconv.ParseUint(a[AnnExportID], 10, 16); err != nil || id == 0 {
		problems = append(problems, fmt.Sprintf("annotation %s=%q is not an export ID from 1 to 65535", AnnExportID, a[AnnExportID]))
	} else {
		v.id = uint16(id)
	}
	v.onDelete = OnDeleteDelete
	if s, ok := a[AnnOnDelete]; ok {
		if v.onDelete, err = parseOnDelete(s); err != nil {
			v.onDelete = OnDeleteRetain
			problems = append(problems, fmt.Sprintf("annotation %s=%q: %v", AnnOnDelete, s, err))
		}
	}
	v.rootSquash = false
	if s, ok := a[AnnRootSquash]; ok {
		if v.rootSquash, err = strconv.ParseBool(s); err != nil {
			v.rootSquash = true
			problems = append(problems, fmt.Sprintf("annotation %s=%q: want true or false; root is squashed meanwhile", AnnRootSquash, s))
		}
	}
	return v, problems, nil
}

// warn logs a problem with an object loudly and, when there is a recorder,
// puts it on the object as a Warning event.
func (p *Provisioner) warn(obj kubeObject, reason, msg string) {
	klog.ErrorS(nil, msg, "object", klog.KObj(obj), "reason", reason)
	if p.opts.Recorder != nil {
		p.opts.Recorder.Event(obj, v1.EventTypeWarning, reason, msg)
	}
}

// kubeObject is what events are recorded on.
type kubeObject interface {
	runtime.Object
	metav1.Object
}
