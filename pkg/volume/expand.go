package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Event reasons of expansion.
const (
	ReasonExpandOffline = "VolumeExpandingOffline"
)

// Expand grows the volume of pv to at least size and returns its new
// capacity, which may be larger (rounding). A filesystem volume grows while
// it is served where the kernel allows it; where not (ext4 without
// CAP_SYS_RESOURCE) it is unexported for the moment of the growth, with an
// event that says so. A directory volume only records the size: nothing
// enforces it. A shrink is refused (storage.ErrUnsupported).
func (p *Provisioner) Expand(ctx context.Context, pv *v1.PersistentVolume, size resource.Quantity) (capacity resource.Quantity, err error) {
	start := time.Now()
	defer func() { p.observe(OpExpand, start, err) }()
	v, problems, err := p.volumeOf(pv)
	if err != nil {
		return resource.Quantity{}, err
	}
	if current := pv.Spec.Capacity[v1.ResourceStorage]; size.Cmp(current) < 0 {
		return resource.Quantity{}, fmt.Errorf("PV %s: %w: %s is less than its %s; volumes cannot shrink", pv.Name, storage.ErrUnsupported, size.String(), current.String())
	}
	backend, err := p.backend(v.kind)
	if err != nil {
		return resource.Quantity{}, err
	}
	logger := klog.FromContext(ctx).WithValues("PV", pv.Name, "volume", v.name, "kind", v.kind)

	defer p.share()()
	unlock := p.locks.lock(pv.Name)
	defer unlock()
	if err := p.checkOwner(pv.Name, v.name); err != nil {
		p.warn(pv, ReasonOwnershipRefused, err.Error()+"; not expanded")
		return resource.Quantity{}, err
	}

	grown, err := p.grow(ctx, backend, v, pv, size.Value())
	if errors.Is(err, storage.ErrOfflineRequired) {
		if len(problems) > 0 || v.id == 0 {
			return resource.Quantity{}, fmt.Errorf("PV %s must be unexported to grow, and its annotations cannot be read (%v); not expanded", pv.Name, problems)
		}
		grown, err = p.growOffline(ctx, backend, v, pv, size.Value())
	}
	if err != nil {
		return resource.Quantity{}, err
	}
	logger.Info("Expanded volume", "size", grown)
	return *resource.NewQuantity(grown, resource.BinarySI), nil
}

// grow grows a filesystem volume while it is served, within the store's
// promise for filesystem volumes.
func (p *Provisioner) grow(ctx context.Context, b storage.Backend, v pvVolume, pv *v1.PersistentVolume, size int64) (int64, error) {
	if v.kind != storage.Directory {
		current := pv.Spec.Capacity[v1.ResourceStorage]
		release, err := p.promise(ctx, b, storage.Spec{Name: v.name, Kind: v.kind, Size: size - current.Value()})
		if err != nil {
			return 0, err
		}
		defer release()
	}
	return b.Expand(ctx, v.name, size, storage.Online)
}

// growOffline unexports the volume, grows it unmounted, and serves it again
// under the same export ID, so clients see a short outage, not a new volume.
func (p *Provisioner) growOffline(ctx context.Context, b storage.Backend, v pvVolume, pv *v1.PersistentVolume, size int64) (int64, error) {
	p.event(pv, v1.EventTypeNormal, ReasonExpandOffline, fmt.Sprintf("%s volume %s cannot grow while mounted here (online growth needs CAP_SYS_RESOURCE); it is unexported for the moment of the growth", v.kind, v.name))
	if err := p.unexport(ctx, pv.Name, v); err != nil {
		return 0, err
	}
	grown, growErr := b.Expand(ctx, v.name, size, storage.Offline)
	// Serve it again whatever happened: the data is there either way.
	opened, err := b.Open(ctx, v.name)
	if err == nil {
		_, err = p.export(ctx, pv.Name, opened, v.id, v.rootSquash)
	}
	if err != nil {
		return 0, errors.Join(growErr, fmt.Errorf("serve volume %s again after growing it: %w", v.name, err))
	}
	return grown, growErr
}

// event records an event on obj when there is a recorder.
func (p *Provisioner) event(obj kubeObject, kind, reason, msg string) {
	klog.InfoS(msg, "object", klog.KObj(obj), "reason", reason)
	if p.opts.Recorder != nil {
		p.opts.Recorder.Event(obj, kind, reason, msg)
	}
}
