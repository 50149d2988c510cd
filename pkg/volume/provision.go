package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// ShouldProvision refuses claims until a reconciliation pass has finished,
// so no new export races the repair of the old ones. The library asks again
// later.
func (p *Provisioner) ShouldProvision(ctx context.Context, claim *v1.PersistentVolumeClaim) bool {
	return p.Reconciled()
}

// Provision makes the volume (empty, or a clone of the claim's dataSource),
// exports it and returns the PV. The volume's owner is recorded in the
// store's ledger before anything is made, so an unfinished provision is
// never mistaken for a leftover, and can be told from one. A second call for
// the same PV name reuses what the first made. Any failure undoes what this
// call made, so bad input leaves no volume, export or record behind.
func (p *Provisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (pv *v1.PersistentVolume, state controller.ProvisioningState, err error) {
	start := time.Now()
	defer func() { p.observe(OpProvision, start, err) }()
	claim := opts.PVC
	logger := klog.FromContext(ctx).WithValues("PVC", klog.KObj(claim), "PV", opts.PVName)

	params, err := checkRequest(opts)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	backend, err := p.backend(params.Kind)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	var source *cloneSource
	if claim.Spec.DataSource != nil {
		if source, err = p.cloneSource(ctx, claim, params.Kind); err != nil {
			return nil, controller.ProvisioningFinished, err
		}
	}

	defer p.share()()
	unlock := p.locks.lock(opts.PVName)
	defer unlock()

	request := claim.Spec.Resources.Requests[v1.ResourceStorage]
	spec := storage.Spec{
		Name: DirectoryName(claim.Namespace, claim.Name, opts.PVName),
		Kind: params.Kind, Size: request.Value(),
		UID: params.UID, GID: params.GID, Mode: params.Mode,
	}
	// A repeated call reuses the first one's name and ID, with no limits to
	// check again.
	rec, repeat := p.reg.lookup(opts.PVName)
	if repeat {
		spec.Name = rec.name
	}
	undo, err := p.recordOwner(spec, opts)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	var v storage.Volume
	var created bool
	defer func() {
		if err == nil {
			return
		}
		// Undo only what this call made; with a fresh context, as ctx may be
		// what failed.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if created {
			if rmErr := backend.Remove(cleanup, spec.Name); rmErr != nil {
				logger.Error(rmErr, "Could not remove the volume of a failed provision; it stays recorded as unfinished", "volume", spec.Name)
				return
			}
		}
		if !repeat {
			p.reg.release(opts.PVName)
		}
		undo()
		state = provisioningState(err)
	}()

	var id uint16
	if !repeat {
		if id, err = p.reg.reserve(opts.PVName, volumeRecord{name: spec.Name, kind: spec.Kind}, p.opts.MaxExports); err != nil {
			return nil, controller.ProvisioningFinished, err
		}
		release, err := p.promise(ctx, backend, spec)
		if err != nil {
			return nil, controller.ProvisioningFinished, err
		}
		defer release()
	} else {
		id = rec.id
	}
	if source != nil {
		v, created, err = backend.Clone(ctx, source.name, spec, p.cloneProgress(claim, source))
	} else {
		v, created, err = backend.Create(ctx, spec)
	}
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	if id, err = p.export(ctx, opts.PVName, v, id, params.RootSquash); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	// Open again, now that it is exported: a backend may finish here what it
	// put off for the volume's first reads (fsimage moves a new volume's loop
	// device to direct I/O). The volume is served either way.
	if _, oerr := backend.Open(ctx, v.Name); oerr != nil {
		logger.Error(oerr, "Could not open the new volume again once exported; it is served, and the next reconciliation pass opens it", "volume", v.Name)
	}

	// Handed over: the library saves the PV, or calls Delete if it cannot.
	// From here the volume may have reached a client, so it is never again
	// an unfinished provision that reconciliation may remove.
	if err = p.finishOwner(spec.Name, opts.PVName, spec.Kind); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	p.handedOver.Store(spec.Name, p.opts.Clock.Now())
	pv = p.buildPV(opts, params, v, id)
	logger.Info("Provisioned volume", "volume", v.Name, "kind", v.Kind, "size", v.Size, "exportID", id,
		"server", p.opts.Server, "path", PseudoPath(v.Name), "clonedFrom", source)
	return pv, controller.ProvisioningFinished, nil
}

// recordOwner writes the ledger record of a new volume, unless one for this
// PV is there already (a repeated call). A record naming another PV means the
// name is taken: the claim is refused and nothing is touched. undo removes a
// record this call wrote.
func (p *Provisioner) recordOwner(spec storage.Spec, opts controller.ProvisionOptions) (undo func(), err error) {
	o, ok, err := p.opts.State.Owner(spec.Name)
	if err != nil {
		return nil, err
	}
	if ok {
		if o.PV != opts.PVName {
			return nil, fmt.Errorf("volume %s belongs to PV %s in this store's ledger; refusing to reuse it for %s", spec.Name, o.PV, opts.PVName)
		}
		return func() {}, nil
	}
	err = p.opts.State.SetOwner(spec.Name, Owner{
		PV: opts.PVName, Kind: spec.Kind,
		Claim:    opts.PVC.Namespace + "/" + opts.PVC.Name,
		ClaimUID: string(opts.PVC.UID),
		Created:  p.opts.Clock.Now().UTC(), Provisioning: true,
	})
	if err != nil {
		return nil, err
	}
	return func() {
		if err := p.opts.State.DropOwner(spec.Name); err != nil {
			klog.Background().Error(err, "Could not drop the ledger record of a failed provision", "volume", spec.Name)
		}
	}, nil
}

// finishOwner marks the ledger record of a provision as finished.
func (p *Provisioner) finishOwner(name, pv string, kind storage.Kind) error {
	return p.updateOwner(name, pv, kind, func(o *Owner) { o.Provisioning = false })
}

// updateOwner applies change to the ledger record of volume name, making
// one for pv when there is none (a volume from before the ledger), and
// writes it only when it changed.
func (p *Provisioner) updateOwner(name, pv string, kind storage.Kind, change func(*Owner)) error {
	o, ok, err := p.opts.State.Owner(name)
	if err != nil {
		return err
	}
	if !ok {
		o = Owner{PV: pv, Kind: kind, Created: p.opts.Clock.Now().UTC()}
	}
	before := o
	if change(&o); ok && o == before {
		return nil
	}
	return p.opts.State.SetOwner(name, o)
}

// promise checks that a new volume fits and holds its room until release.
// A filesystem volume's size is a promise: all of them together never exceed
// the store's size times -overcommit. A directory volume only has to fit in
// what is free now.
func (p *Provisioner) promise(ctx context.Context, b storage.Backend, spec storage.Spec) (release func(), err error) {
	p.room.Lock()
	defer p.room.Unlock()
	u, err := b.Usage(ctx)
	if err != nil {
		return nil, err
	}
	if spec.Kind == storage.Directory {
		if spec.Size > u.Free {
			return nil, fmt.Errorf("%w: the claim requests %d bytes and the export dir has %d free", storage.ErrNoSpace, spec.Size, u.Free)
		}
		return func() {}, nil
	}
	limit := int64(float64(u.Total) * p.opts.Overcommit)
	if u.Allocated+p.pending+spec.Size > limit {
		return nil, fmt.Errorf("%w: %s volumes of %d bytes are promised already, and %d more would pass the store's %d bytes times -overcommit=%g",
			storage.ErrNoSpace, spec.Kind, u.Allocated+p.pending, spec.Size, u.Total, p.opts.Overcommit)
	}
	p.pending += spec.Size
	return func() {
		p.room.Lock()
		p.pending -= spec.Size
		p.room.Unlock()
	}, nil
}

// export adds the export of volume v under id and returns the ID it is
// served under. When ganesha serves id for something else, which can happen
// when exports are managed outside this process, the ID is marked foreign
// and the next free one is tried; the PV then records the ID that was used.
func (p *Provisioner) export(ctx context.Context, pv string, v storage.Volume, id uint16, rootSquash bool) (uint16, error) {
	for attempt := 0; ; attempt++ {
		e, err := p.exportFor(v, id, rootSquash)
		if err != nil {
			return 0, err
		}
		err = p.opts.Exporter.Add(ctx, e)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ganesha.ErrConflict) || attempt >= 16 {
			return 0, fmt.Errorf("export %s: %w", e.Path, err)
		}
		rec, _ := p.reg.lookup(pv)
		// Served already under another ID (its pseudo path is the volume's
		// own): keep that one, so clients keep their file handles.
		if live, lerr := p.opts.Exporter.List(ctx); lerr == nil {
			for _, l := range live {
				if l.ID != id && l.Pseudo == e.Pseudo && l.Path == e.Path {
					rec.id = l.ID
					if p.reg.claim(pv, rec) == nil {
						return l.ID, nil
					}
				}
			}
		}
		klog.FromContext(ctx).Info("Export ID is taken in ganesha by something else; trying another", "exportID", id, "err", err)
		p.reg.release(pv)
		p.reg.markForeign(id)
		if id, err = p.reg.reserve(pv, rec, -1); err != nil {
			return 0, err
		}
	}
}

// exportFor is the export of volume v, with the options the flags and the
// PV ask for.
func (p *Provisioner) exportFor(v storage.Volume, id uint16, rootSquash bool) (ganesha.Export, error) {
	if v.Path == "" {
		return ganesha.Export{}, fmt.Errorf("volume %s has no path to export", v.Name)
	}
	squash := ganesha.NoRootSquash
	if rootSquash {
		squash = ganesha.RootSquash
	}
	return ganesha.Export{
		ID:      id,
		Path:    v.Path,
		Pseudo:  PseudoPath(v.Name),
		Access:  ganesha.AccessRW,
		Squash:  squash,
		Clients: p.opts.Clients,
		FSAL:    exportFSAL(v.FSAL),
	}, nil
}

// exportFSAL is how ganesha reaches a volume the backend describes.
func exportFSAL(f storage.FSAL) ganesha.FSAL {
	if f.Name == "" {
		return ganesha.FSAL{}
	}
	return ganesha.FSAL{Name: f.Name, UserID: f.User, Secret: f.Secret, Filesystem: f.Filesystem}
}

// checkRequest rejects what this provisioner cannot honour, with a message
// that names the problem; the library turns it into a Warning event.
func checkRequest(opts controller.ProvisionOptions) (Params, error) {
	claim := opts.PVC
	if claim.Spec.Selector != nil {
		return Params{}, fmt.Errorf("%w: claim.spec.selector is not supported: a dynamically provisioned volume cannot match a label selector", errInvalid)
	}
	if m := claim.Spec.VolumeMode; m != nil && *m == v1.PersistentVolumeBlock {
		return Params{}, fmt.Errorf("%w: volumeMode Block is not supported: NFS volumes are filesystems", errInvalid)
	}
	request, ok := claim.Spec.Resources.Requests[v1.ResourceStorage]
	if !ok {
		return Params{}, fmt.Errorf("%w: claim requests no storage size", errInvalid)
	}
	if request.Sign() <= 0 {
		return Params{}, fmt.Errorf("%w: claim requests %s of storage; want more than 0", errInvalid, request.String())
	}
	if opts.StorageClass == nil {
		return Params{}, fmt.Errorf("%w: claim has no StorageClass", errInvalid)
	}
	if err := checkDataSource(claim); err != nil {
		return Params{}, err
	}
	params, err := ParseParams(opts.StorageClass.Parameters)
	if err != nil {
		return Params{}, fmt.Errorf("%w: %w", errInvalid, err)
	}
	return params, nil
}
