package volume

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Event reasons of reconciliation.
const (
	ReasonDuplicateExportID = "DuplicateExportID"
	ReasonExportIDRepaired  = "ExportIDRepaired"
)

// RunReconciler reconciles at once, then every interval and whenever Trigger
// is called, until ctx ends. A failed pass (the API server away, say) is
// logged and tried again; it never stops the NFS service, which does not
// depend on it.
func (p *Provisioner) RunReconciler(ctx context.Context, interval time.Duration) {
	logger := klog.FromContext(ctx)
	backoff := time.Second
	for {
		p.awaitQuiet(ctx, quietWait)
		passCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := p.Reconcile(passCtx)
		cancel()
		wait := interval
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			logger.Error(err, "Reconciliation failed; NFS service goes on, provisioning waits for a pass", "retryIn", backoff)
			wait = backoff
			backoff = min(2*backoff, interval)
		} else {
			backoff = time.Second
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-p.trigger:
			timer.Stop()
			// A burst of claims adds a PV each; passes take the store to
			// themselves, so triggered ones come at most every triggerGap.
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(triggerGap, interval)):
			}
		case <-timer.C:
		}
	}
}

// triggerGap is the least time between two passes that PV events asked for.
const triggerGap = 5 * time.Second

// quietWait is how long a pass waits for a moment when no provision,
// deletion or expansion is under way. A pass takes the store to itself:
// taken in the middle of a burst of claims, it waits for every operation in
// flight to end, and holds up every one that comes meanwhile. So, during a
// burst, passes come after it, or at most every quietWait.
const quietWait = 20 * time.Second

// awaitQuiet returns once no operation is under way, or after limit
// (the first pass, which provisioning waits for, does not wait).
func (p *Provisioner) awaitQuiet(ctx context.Context, limit time.Duration) {
	if !p.Reconciled() {
		return
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for p.busy.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// Trigger asks for a reconciliation pass soon, for instance because a PV
// changed. Calls while one is pending are merged.
func (p *Provisioner) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// owned is one PV of this store as reconciliation sees it.
type owned struct {
	pv       *v1.PersistentVolume
	vol      pvVolume
	problems []string
}

// Reconcile makes the NFS server agree with the PVs, which are the source of
// truth, and reports what the store holds beyond them. It never deletes,
// moves or unexports data a PV may own:
//   - every volume a PV of this store names is made ready (a filesystem
//     volume is mounted) and exported, and each live export's options
//     converge to what the flags and the PV ask for;
//   - only an export whose volume no PV names, and which no unfinished
//     provision is making, is removed: its PV is gone. Exports that are not
//     this provisioner's are never touched;
//   - a PV naming a volume that belongs to another PV, or that several PVs
//     name, is refused with an event, and nothing of it is touched;
//   - volumes no PV names are kept and listed as leftovers, except what an
//     unfinished provision made when its claim is gone or bound elsewhere
//     after the grace period: nobody ever received it.
func (p *Provisioner) Reconcile(ctx context.Context) (res ReconcileResult, err error) {
	logger := klog.FromContext(ctx)
	p.gate.Lock()
	defer p.gate.Unlock()

	list, err := p.opts.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return res, fmt.Errorf("list PersistentVolumes: %w", err)
	}
	live, err := p.opts.Exporter.List(ctx)
	if err != nil {
		return res, fmt.Errorf("list exports: %w", err)
	}

	named, unreadable := p.readPVs(list.Items, &res) // forgets the hand-overs whose PV it saw
	// Forget the hand-overs older than IntentGrace too, queried or not.
	p.handedOver.Range(func(k, _ any) bool {
		p.inHandOver(k.(string))
		return true
	})
	legit := p.checkOwners(named, &res)
	p.rebuildRegistry(ctx, list.Items, legit, live, &res)

	desired := map[uint16]ganesha.Export{}
	byID := map[uint16]owned{}
	served := map[string]string{} // PV -> path
	for _, o := range legit {
		if o.vol.id == 0 {
			continue
		}
		e, ok := p.desiredExport(ctx, o, &res)
		if ok {
			desired[o.vol.id] = e
			byID[o.vol.id] = o
			served[o.pv.Name] = e.Path
		}
	}
	p.recordVolumes(legit, served)

	// Live exports: converge ours, remove those whose PV is gone.
	for _, e := range live {
		name, ours := ownExport(e)
		if !ours {
			p.reg.markForeign(e.ID)
			continue
		}
		if want, ok := desired[e.ID]; ok {
			delete(desired, e.ID)
			if want.Equal(e) {
				res.AlreadyExported++
				continue
			}
			if err := p.converge(ctx, e, want); err != nil {
				return res, err
			}
			logger.Info("Export options drifted; converged them", "exportID", e.ID, "was", e.String(), "now", want.String())
			res.Converged++
			continue
		}
		if _, isNamed := named[name]; isNamed || unreadable > 0 || p.inFlight(name) {
			continue // some PV names it, or may: keep serving
		}
		logger.Info("Removing the export of a volume whose PV is gone; its data is kept", "exportID", e.ID, "volume", name)
		if err := p.opts.Exporter.Remove(ctx, e.ID); err != nil {
			return res, fmt.Errorf("remove export %d of %s: %w", e.ID, name, err)
		}
		res.StrayExports++
	}
	ids := make([]int, 0, len(desired))
	for id := range desired {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	for _, i := range ids {
		o := byID[uint16(i)]
		v, err := p.openFor(ctx, o)
		if err != nil {
			return res, err
		}
		id, err := p.export(ctx, o.pv.Name, v, o.vol.id, o.vol.rootSquash)
		if err != nil {
			return res, fmt.Errorf("re-export PV %s: %w", o.pv.Name, err)
		}
		if id != o.vol.id {
			p.recordExportID(ctx, o.pv, id, ReasonExportIDRepaired, fmt.Sprintf("export ID %d is served by something else; this volume is now served under export ID %d", o.vol.id, id))
		}
		res.Reexported++
	}

	if err := p.collectLeftovers(ctx, named, &res); err != nil {
		return res, err
	}
	first := !p.reconciled.Swap(true)
	p.opts.Observer.Reconciled(res)
	logger.V(boolToLevel(first || res.changed())).Info("Reconciled exports and volumes with PersistentVolumes", "volumes", res.Volumes,
		"alreadyExported", res.AlreadyExported, "reexported", res.Reexported, "converged", res.Converged,
		"strayExports", res.StrayExports, "missing", res.Missing, "refused", res.Refused, "unreadable", res.Unreadable,
		"leftovers", res.Leftovers, "reapedIntents", res.ReapedIntents)
	return res, nil
}

func (r ReconcileResult) changed() bool {
	return r.Reexported+r.Converged+r.StrayExports+r.Missing+r.Refused+r.Unreadable+r.ReapedIntents > 0
}

// boolToLevel logs the first pass and passes that changed something at
// level 0, quiet ones at 2.
func boolToLevel(changed bool) int {
	if changed {
		return 0
	}
	return 2
}

// readPVs groups the PVs of this store by the volume they name. A PV whose
// volume name cannot be read is counted: while there is one, no export is
// taken for stray, since it may be that PV's.
func (p *Provisioner) readPVs(pvs []v1.PersistentVolume, res *ReconcileResult) (named map[string][]owned, unreadable int) {
	named = map[string][]owned{}
	seen := map[string]bool{}
	for i := range pvs {
		pv := &pvs[i]
		if !p.Owns(pv) {
			continue
		}
		seen[pv.Name] = true
		if _, gone := p.deleted.Load(pv.Name); gone {
			continue
		}
		res.Volumes++
		vol, problems, err := p.volumeOf(pv)
		if err != nil {
			res.Unreadable++
			unreadable++
			p.warn(pv, ReasonBadAnnotations, err.Error()+"; the volume cannot be found, so it is not served, and nothing in the store is removed while this PV is there")
			continue
		}
		if len(problems) > 0 {
			res.Unreadable++
			p.warn(pv, ReasonBadAnnotations, fmt.Sprintf("%s; the volume is still served and never removed by reconciliation", strings.Join(problems, "; ")))
		}
		named[vol.name] = append(named[vol.name], owned{pv: pv, vol: vol, problems: problems})
		p.handedOver.Delete(vol.name)
	}
	// Forget tombstones of PVs whose object is gone.
	p.deleted.Range(func(k, _ any) bool {
		if !seen[k.(string)] {
			p.deleted.Delete(k)
		}
		return true
	})
	return named, unreadable
}

// checkOwners keeps, for each volume, the PV that owns it: the one the
// store's ledger names, or, for a volume made before the ledger, the only PV
// naming it whose name it was made for (which is then recorded). Every other
// PV naming it is refused with an event and touched no further.
func (p *Provisioner) checkOwners(named map[string][]owned, res *ReconcileResult) []owned {
	var legit []owned
	names := make([]string, 0, len(named))
	for n := range named {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		pvs := named[name]
		o, ok, err := p.opts.State.Owner(name)
		if err != nil {
			for _, x := range pvs {
				res.Refused++
				p.warn(x.pv, ReasonOwnershipRefused, err.Error())
			}
			continue
		}
		owner := ""
		switch {
		case ok:
			owner = o.PV
		case len(pvs) == 1 && boundTo(name, pvs[0].pv.Name):
			owner = pvs[0].pv.Name
		}
		for _, x := range pvs {
			if x.pv.Name != owner {
				res.Refused++
				why := fmt.Sprintf("PV names volume %s, which belongs to PV %s", name, owner)
				if owner == "" {
					why = fmt.Sprintf("PV names volume %s, which %d PVs name and none provably owns", name, len(pvs))
				}
				p.warn(x.pv, ReasonOwnershipRefused, why+"; this PV is refused: it is not served by it, and deleting it deletes nothing")
				continue
			}
			if ok && o.Released {
				continue // deleted under onDelete=retain; the PV object lingers
			}
			if !ok || o.Provisioning {
				rec := Owner{PV: owner, Kind: x.vol.kind, Created: x.pv.CreationTimestamp.UTC()}
				if ok {
					rec = o
					rec.Provisioning = false
				}
				if err := p.opts.State.SetOwner(name, rec); err != nil {
					klog.Background().Error(err, "Could not record the owner of a volume", "volume", name, "PV", owner)
				}
			}
			legit = append(legit, x)
		}
	}
	return legit
}

// rebuildRegistry records the IDs of the legit PVs. Two PVs with one ID: the
// one ganesha serves under it keeps it, else the older (its clients have held
// it longest); the other goes back to the ID ganesha serves it under, or
// gets a new one. A PV whose ID cannot be read gets the ID its live export has, or a new
// one; either way the PV is told. PVs that are gone are forgotten, unless an
// unfinished provision is still making them.
func (p *Provisioner) rebuildRegistry(ctx context.Context, all []v1.PersistentVolume, legit []owned, live []ganesha.Export, res *ReconcileResult) {
	sort.Slice(legit, func(i, j int) bool {
		a, b := legit[i].pv, legit[j].pv
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	present := map[string]bool{}
	for i := range all {
		present[all[i].Name] = true
	}
	for pv, rec := range p.reg.snapshot() {
		if !present[pv] && !p.inFlight(rec.name) {
			p.reg.release(pv)
		}
	}
	livePseudo := map[string]uint16{}
	for _, e := range live {
		if name, ours := ownExport(e); ours {
			livePseudo[name] = e.ID
		}
	}
	// PVs that ganesha serves under the ID they record claim it first: their
	// clients hold those file handles. Then the rest, oldest first.
	var rest, moved []int
	for i := range legit {
		o := &legit[i]
		if o.vol.id != 0 && livePseudo[o.vol.name] == o.vol.id &&
			p.reg.claim(o.pv.Name, volumeRecord{id: o.vol.id, name: o.vol.name, kind: o.vol.kind}) == nil {
			continue
		}
		rest = append(rest, i)
	}
	for _, i := range rest {
		o := &legit[i]
		if o.vol.id == 0 {
			o.vol.id = livePseudo[o.vol.name] // 0 when not live either
		}
		if o.vol.id == 0 || p.reg.claim(o.pv.Name, volumeRecord{id: o.vol.id, name: o.vol.name, kind: o.vol.kind}) != nil {
			moved = append(moved, i)
		}
	}
	for _, i := range moved {
		o := &legit[i]
		old := o.vol.id
		rec := volumeRecord{name: o.vol.name, kind: o.vol.kind}
		// The ID ganesha serves the volume under already, if it is free,
		// so clients keep their file handles; else a new one.
		id := livePseudo[o.vol.name]
		if rec.id = id; id == 0 || id == old || p.reg.claim(o.pv.Name, rec) != nil {
			var err error
			if id, err = p.reg.reserve(o.pv.Name, rec, -1); err != nil {
				p.warn(o.pv, ReasonDuplicateExportID, err.Error())
				continue
			}
		}
		o.vol.id = id
		if old == 0 {
			p.recordExportID(ctx, o.pv, id, ReasonExportIDRepaired, fmt.Sprintf("the PV's export ID could not be read; the volume is served under export ID %d", id))
			continue
		}
		owner, _ := p.reg.ownerOf(old)
		res.Refused++
		p.recordExportID(ctx, o.pv, id, ReasonDuplicateExportID, fmt.Sprintf("export ID %d is also held by the older PV %s; this volume is served under export ID %d", old, owner, id))
	}
}

// desiredExport is the export volume o must have, with its volume made ready.
// A volume missing from the store is reported, not re-created empty, so the
// loss is noticed.
func (p *Provisioner) desiredExport(ctx context.Context, o owned, res *ReconcileResult) (ganesha.Export, bool) {
	v, err := p.openFor(ctx, o)
	if err != nil {
		res.Missing++
		p.warn(o.pv, ReasonVolumeMissing, fmt.Sprintf("volume %s cannot be served: %v; it is not re-created empty, so the loss is noticed", o.vol.name, err))
		return ganesha.Export{}, false
	}
	e, err := p.exportFor(v, o.vol.id, o.vol.rootSquash)
	if err != nil {
		res.Missing++
		p.warn(o.pv, ReasonVolumeMissing, err.Error())
		return ganesha.Export{}, false
	}
	return e.Normalized(), true
}

// openFor makes the volume of o ready to serve.
func (p *Provisioner) openFor(ctx context.Context, o owned) (storage.Volume, error) {
	b, ok := p.backends[o.vol.kind]
	if !ok {
		return storage.Volume{}, fmt.Errorf("%w: %s volumes are not made by this provisioner (it makes %s)", storage.ErrUnavailable, o.vol.kind, kindsOf(p.backends))
	}
	return b.Open(ctx, o.vol.name)
}

// converge changes a live export's options to want's.
func (p *Provisioner) converge(ctx context.Context, have, want ganesha.Export) error {
	if have.Path == want.Path && have.Pseudo == want.Pseudo {
		if err := p.opts.Exporter.Update(ctx, want); err == nil {
			return nil
		} else if !errors.Is(err, ganesha.ErrUnsupported) {
			return fmt.Errorf("converge export %d: %w", want.ID, err)
		}
	}
	// A new path for the same volume (a store moved) needs the export again.
	if err := p.opts.Exporter.Remove(ctx, have.ID); err != nil {
		return fmt.Errorf("converge export %d: %w", want.ID, err)
	}
	if err := p.opts.Exporter.Add(ctx, want); err != nil {
		return fmt.Errorf("converge export %d: %w", want.ID, err)
	}
	return nil
}

// ownExport tells an export this provisioner made, whose Pseudo path is the
// volume's name, from one made by someone else, which is never touched.
func ownExport(e ganesha.Export) (name string, ours bool) {
	if e.Pseudo == "" {
		return "", false
	}
	name = strings.TrimPrefix(e.Pseudo, "/")
	return name, storage.CheckName(name) == nil
}

// inFlight reports whether an unfinished provision may be making volume
// name, or one that finished returned it in a PV that is not saved yet (a
// pass between the two would otherwise unexport a volume just handed over).
func (p *Provisioner) inFlight(name string) bool {
	if p.inHandOver(name) {
		return true
	}
	o, ok, err := p.opts.State.Owner(name)
	return err != nil || (ok && o.Provisioning)
}

// inHandOver reports whether volume name was returned in a PV that may not
// be saved yet. A hand-over is protected until a pass sees its PV (readPVs
// forgets it then), or for IntentGrace: a PV never saved by then was given
// up by the library, and the hand-over is forgotten here.
func (p *Provisioner) inHandOver(name string) bool {
	at, ok := p.handedOver.Load(name)
	if !ok {
		return false
	}
	if p.opts.Clock.Since(at.(time.Time)) < p.opts.IntentGrace {
		return true
	}
	p.handedOver.Delete(name)
	return false
}

// recordExportID writes the ID a volume is served under into its PV, so that
// the PV records what ganesha serves, and tells the PV's users.
func (p *Provisioner) recordExportID(ctx context.Context, pv *v1.PersistentVolume, id uint16, reason, msg string) {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnExportID, strconv.Itoa(int(id)))
	if _, err := p.opts.Client.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		msg += "; recording the new ID on the PV failed: " + err.Error()
	}
	p.warn(pv, reason, msg)
}

// collectLeftovers lists the volumes no PV names, keeps them, and reaps only
// what an unfinished provision made and nobody received: its PV does not
// exist, its claim is gone or bound to another PV, and the grace period has
// passed.
func (p *Provisioner) collectLeftovers(ctx context.Context, named map[string][]owned, res *ReconcileResult) error {
	logger := klog.FromContext(ctx)
	var lines []string
	seen := map[string]bool{}
	listed := true
	for kind, b := range p.backends {
		names, err := b.List(ctx)
		if err != nil {
			// A remote store (a Ceph cluster) that does not answer must not
			// stop provisioning of the other kinds; its volumes are neither
			// listed nor reaped this pass.
			logger.Error(err, "Could not list the volumes of a backend; its leftovers are not reported this pass and nothing is reaped", "kind", kind)
			listed = false
			continue
		}
		for _, name := range names {
			if seen[name] {
				continue
			}
			seen[name] = true
			if _, ok := named[name]; ok {
				continue
			}
			if p.inHandOver(name) {
				continue // its PV is being saved
			}
			o, ok, err := p.opts.State.Owner(name)
			if err == nil && ok && o.Provisioning {
				reaped, err := p.reapIntent(ctx, b, name, o)
				if err != nil {
					logger.Error(err, "Could not check an unfinished provision; keeping it", "volume", name)
				}
				if reaped {
					res.ReapedIntents++
					continue
				}
				if p.opts.Clock.Since(o.Created) < p.opts.IntentGrace {
					continue // still being provisioned, most likely
				}
			}
			why := "no PV names it"
			if ok && o.PV != "" {
				why = fmt.Sprintf("made for PV %s, which is gone", o.PV)
				if o.Released {
					why = fmt.Sprintf("kept when PV %s was deleted (onDelete=retain)", o.PV)
				}
			}
			lines = append(lines, fmt.Sprintf("%s\t%s\t%s", name, kind, why))
			res.Leftovers++
		}
	}
	// Records of provisions that died before making anything; only when
	// every backend was listed, or a volume of one that was not would look
	// unmade.
	recorded, err := p.opts.State.Owners()
	if err != nil {
		return err
	}
	for _, name := range recorded {
		if !listed {
			break
		}
		if seen[name] {
			continue
		}
		if _, ok := named[name]; ok {
			continue
		}
		if o, ok, err := p.opts.State.Owner(name); err == nil && ok && o.Provisioning {
			if reaped, _ := p.reapIntent(ctx, nil, name, o); reaped {
				res.ReapedIntents++
			}
		}
	}
	if err := p.opts.State.WriteLeftovers(lines); err != nil {
		return fmt.Errorf("write the leftovers listing: %w", err)
	}
	if res.Leftovers > 0 {
		logger.Info("The store holds volumes that no PV names; they are kept", "leftovers", res.Leftovers, "listing", p.opts.State.LeftoversFile())
	}
	return nil
}

// reapIntent removes what an unfinished provision made, only when nobody can
// have received it: no PV names it (the caller checked), the grace period
// has passed, and its claim is gone, is another claim now, or is bound to
// another PV. b is nil when nothing was made.
func (p *Provisioner) reapIntent(ctx context.Context, b storage.Backend, name string, o Owner) (bool, error) {
	if p.opts.Clock.Since(o.Created) < p.opts.IntentGrace {
		return false, nil
	}
	ns, claimName, _ := strings.Cut(o.Claim, "/")
	if claimName == "" {
		return false, nil
	}
	claim, err := p.opts.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claimName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return false, err
	case string(claim.UID) != o.ClaimUID:
	case claim.Spec.VolumeName != "" && claim.Spec.VolumeName != o.PV:
	default:
		return false, nil // the claim may still get this volume
	}
	if _, err := p.opts.Client.CoreV1().PersistentVolumes().Get(ctx, o.PV, metav1.GetOptions{}); err == nil || !apierrors.IsNotFound(err) {
		return false, err // the PV exists after all, or we cannot tell
	}
	live, err := p.opts.Exporter.List(ctx)
	if err != nil {
		return false, err
	}
	for _, e := range live {
		if n, ours := ownExport(e); ours && n == name {
			if err := p.opts.Exporter.Remove(ctx, e.ID); err != nil {
				return false, err
			}
		}
	}
	if b != nil {
		if err := b.Remove(ctx, name); err != nil {
			return false, err
		}
	}
	if err := p.opts.State.DropOwner(name); err != nil {
		return false, err
	}
	p.reg.release(o.PV)
	klog.FromContext(ctx).Info("Removed an unfinished provision that nobody received", "volume", name, "PV", o.PV, "claim", o.Claim, "age", p.opts.Clock.Since(o.Created).Round(time.Second))
	return true, nil
}
