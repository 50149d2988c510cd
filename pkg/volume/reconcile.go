package volume

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// Event reasons of reconciliation.
const (
	ReasonDuplicateExportID = "DuplicateExportID"
	ReasonDirectoryMissing  = "VolumeDirectoryMissing"
	ReasonBadAnnotations    = "VolumeAnnotationsInvalid"
)


// Reconcile makes the NFS server and the store agree with the PVs, which are
// the source of truth. It must run before the provisioner serves claims:
//   - every PV of this store is exported again if ganesha does not serve it;
//   - exports that no PV owns are removed;
//   - two PVs with one export ID are reported loudly, and the younger one is
//     given a new ID;
//   - directories without a PV are removed when empty (a provision that died
//     before its PV was saved) or archived when they hold data, so nothing is
//     lost.
func (p *Provisioner) Reconcile(ctx context.Context) (ReconcileResult, error) {
	logger := klog.FromContext(ctx)
	var res ReconcileResult

	pvs, err := p.opts.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return res, fmt.Errorf("list PersistentVolumes: %w", err)
	}
	mine := p.volumesOfStore(ctx, pvs.Items, &res)
	res.Volumes = len(mine)

	live, err := p.opts.Exporter.List(ctx)
	if err != nil {
		return res, fmt.Errorf("list exports: %w", err)
	}
	liveByID := map[uint16]string{}
	for _, e := range live {
		liveByID[e.ID] = e.Path
	}

	// Exports no PV owns go first, so their IDs are free for what follows.
	wanted := map[uint16]string{}
	for _, v := range mine {
		if path, err := p.opts.Store.Path(v.vol.dir); err == nil {
			wanted[v.vol.id] = path
		}
	}
	for _, e := range live {
		if wanted[e.ID] == e.Path {
			continue
		}
		logger.Info("Removing an export that no PV owns", "exportID", e.ID, "path", e.Path)
		if err := p.opts.Exporter.Remove(ctx, e.ID); err != nil {
			return res, fmt.Errorf("remove stray export %d (%s): %w", e.ID, e.Path, err)
		}
		delete(liveByID, e.ID)
		res.StrayExports++
	}

	for _, v := range mine {
		ok, err := p.opts.Store.Exists(v.vol.dir)
		if err != nil {
			return res, fmt.Errorf("PV %s: %w", v.pv.Name, err)
		}
		if !ok {
			res.Missing++
			p.warn(v.pv, ReasonDirectoryMissing, fmt.Sprintf("directory %s of this volume is missing from the export dir; it is not exported, and was not recreated empty so the loss is noticed", v.vol.dir))
			continue
		}
		path, _ := p.opts.Store.Path(v.vol.dir)
		if liveByID[v.vol.id] == path {
			res.AlreadyExported++
			continue
		}
		if err := p.export(ctx, v.pv.Name, v.vol.dir, v.vol.id, v.vol.rootSquash); err != nil {
			return res, fmt.Errorf("re-export PV %s: %w", v.pv.Name, err)
		}
		res.Reexported++
	}

	if err := p.collectOrphans(ctx, mine, &res); err != nil {
		return res, err
	}
	p.reconciled.Store(true)
	logger.Info("Reconciled exports and directories with PersistentVolumes", "volumes", res.Volumes,
		"alreadyExported", res.AlreadyExported, "reexported", res.Reexported, "strayExports", res.StrayExports,
		"duplicateIDs", res.Refused, "missingDirectories", res.Missing,
		"removedOrphans", res.Leftovers, "archivedOrphans", res.Leftovers)
	return res, nil
}

type ownedVolume struct {
	pv  *v1.PersistentVolume
	vol pvVolume
}

// volumesOfStore reads the PVs of this store into the registry, giving a new
// export ID to every PV whose ID an older PV holds already.
func (p *Provisioner) volumesOfStore(ctx context.Context, pvs []v1.PersistentVolume, res *ReconcileResult) []ownedVolume {
	var mine []ownedVolume
	for i := range pvs {
		pv := &pvs[i]
		if pv.Annotations[AnnIdentity] != p.opts.Identity {
			continue
		}
		vol, err := p.volumeOf(pv)
		if err != nil {
			res.Unreadable++
			p.warn(pv, ReasonBadAnnotations, err.Error())
			continue
		}
		mine = append(mine, ownedVolume{pv: pv, vol: vol})
	}
	// The oldest PV keeps a contested ID: its clients have held it longest.
	sort.Slice(mine, func(i, j int) bool {
		a, b := mine[i].pv, mine[j].pv
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	var contested []int
	for i, v := range mine {
		if err := p.reg.claim(v.pv.Name, v.vol.dir, v.vol.id); err != nil {
			contested = append(contested, i)
		}
	}
	for _, i := range contested {
		v := &mine[i]
		id, err := p.reg.reserve(v.pv.Name, v.vol.dir)
		if err != nil {
			p.warn(v.pv, ReasonDuplicateExportID, err.Error())
			continue
		}
		owner, _ := p.reg.ownerOf(v.vol.id)
		msg := fmt.Sprintf("export ID %d is also held by the older PV %s; this volume moves to export ID %d (clients may need to remount)", v.vol.id, owner, id)
		if err := p.patchExportID(ctx, v.pv.Name, id); err != nil {
			msg += "; recording the new ID on the PV failed: " + err.Error()
		}
		p.warn(v.pv, ReasonDuplicateExportID, msg)
		v.vol.id = id
		res.Refused++
	}
	return mine
}

func (p *Provisioner) patchExportID(ctx context.Context, pvName string, id uint16) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnExportID, strconv.Itoa(int(id)))
	_, err := p.opts.Client.CoreV1().PersistentVolumes().Patch(ctx, pvName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// collectOrphans removes or archives directories that no PV of this store
// names.
func (p *Provisioner) collectOrphans(ctx context.Context, mine []ownedVolume, res *ReconcileResult) error {
	logger := klog.FromContext(ctx)
	owned := map[string]bool{}
	for _, v := range mine {
		owned[v.vol.dir] = true
	}
	dirs, err := p.opts.Store.VolumeDirectories()
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		if owned[dir] {
			continue
		}
		empty, err := p.opts.Store.IsEmpty(dir)
		if err != nil {
			return err
		}
		if empty {
			if err := p.opts.Store.Remove(dir); err != nil {
				return err
			}
			logger.Info("Removed an empty directory that no PV owns", "directory", dir)
			res.Leftovers++
			continue
		}
		name, err := p.opts.Store.Archive(dir, p.opts.Clock.Now())
		if err != nil {
			return err
		}
		logger.Info("Archived a directory with data that no PV owns", "directory", dir, "archive", name)
		res.Leftovers++
	}
	return nil
}

// warn logs a problem with a PV loudly and, when there is a recorder, puts it
// on the PV as a Warning event.
func (p *Provisioner) warn(pv *v1.PersistentVolume, reason, msg string) {
	klog.ErrorS(nil, msg, "PV", pv.Name, "reason", reason)
	if p.opts.Recorder != nil {
		p.opts.Recorder.Event(pv, v1.EventTypeWarning, reason, msg)
	}
}
