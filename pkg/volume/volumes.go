package volume

import (
	v1 "k8s.io/api/core/v1"
)

// Volumes lists the volumes the PVs of this store name, as the last
// reconciliation pass saw them (at most -reconcile-interval old, and fresh
// after every PV change), for metrics. A volume not served has no Path.
func (p *Provisioner) Volumes() []VolumeInfo {
	if v := p.volumes.Load(); v != nil {
		return *v
	}
	return nil
}

// recordVolumes keeps what a pass found for Volumes.
func (p *Provisioner) recordVolumes(legit []owned, served map[string]string) {
	out := make([]VolumeInfo, 0, len(legit))
	for _, o := range legit {
		info := VolumeInfo{
			PV:           o.pv.Name,
			StorageClass: o.pv.Spec.StorageClassName,
			Kind:         o.vol.kind,
			ExportID:     o.vol.id,
			Path:         served[o.pv.Name],
		}
		if ref := o.pv.Spec.ClaimRef; ref != nil {
			info.Namespace, info.Claim = ref.Namespace, ref.Name
		}
		if q, ok := o.pv.Spec.Capacity[v1.ResourceStorage]; ok {
			info.Capacity = q.Value()
		}
		out = append(out, info)
	}
	p.volumes.Store(&out)
}
