package volume

import "github.com/nfs-provisioner/nfs-provisioner/pkg/storage"

// Volumes lists the volumes this provisioner serves, for metrics.
//
// Interim: built from the export registry alone, so it knows each volume's
// PV, export ID and path but not its claim, class or capacity. The
// provisioner's rewrite replaces it with one that does.
func (p *Provisioner) Volumes() []VolumeInfo {
	p.reg.mu.Lock()
	defer p.reg.mu.Unlock()
	out := make([]VolumeInfo, 0, len(p.reg.byPV))
	for pv, rec := range p.reg.byPV {
		path, _ := p.opts.Store.Path(rec.dir)
		out = append(out, VolumeInfo{PV: pv, Kind: storage.Directory, ExportID: rec.id, Path: path})
	}
	return out
}
