package volume

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Event reasons of clones.
const (
	ReasonCloneProgress = "CloneProgress"
)

// cloneProgressEvery is how often a long copy reports on its claim.
const cloneProgressEvery = 10 * time.Second

// checkDataSource accepts only what can be honoured: a clone of a claim.
// Anything else (a snapshot, a populator's object) is refused, because an
// empty volume would silently lose the data the user asked for.
func checkDataSource(claim *v1.PersistentVolumeClaim) error {
	ds, ref := claim.Spec.DataSource, claim.Spec.DataSourceRef
	if ds == nil && ref == nil {
		return nil
	}
	if ref != nil {
		if ref.Namespace != nil && *ref.Namespace != "" && *ref.Namespace != claim.Namespace {
			return fmt.Errorf("%w: claim.spec.dataSourceRef names claim %s/%s in another namespace; only a claim of the same namespace can be cloned", errInvalid, *ref.Namespace, ref.Name)
		}
		if ds == nil {
			ds = &v1.TypedLocalObjectReference{APIGroup: ref.APIGroup, Kind: ref.Kind, Name: ref.Name}
		}
	}
	if ds.Kind != "PersistentVolumeClaim" || (ds.APIGroup != nil && *ds.APIGroup != "") {
		return fmt.Errorf("%w: claim.spec.dataSource %s %s is not supported: only a PersistentVolumeClaim of the same class can be cloned (no snapshots), and an empty volume would silently lose the data", errInvalid, ds.Kind, ds.Name)
	}
	return nil
}

// cloneSource is the volume a new claim is cloned from.
type cloneSource struct {
	claim string // namespace/name
	pv    string
	name  string
	size  int64
}

func (s *cloneSource) String() string {
	if s == nil {
		return ""
	}
	return s.claim
}

// cloneSource resolves the claim's dataSource to a volume of this store and
// of the claim's kind, or says why it cannot be cloned.
func (p *Provisioner) cloneSource(ctx context.Context, claim *v1.PersistentVolumeClaim, kind storage.Kind) (*cloneSource, error) {
	name := claim.Spec.DataSource.Name
	src, err := p.opts.Client.CoreV1().PersistentVolumeClaims(claim.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("clone source claim %s/%s: %w", claim.Namespace, name, err)
	}
	if class, want := ptrValue(src.Spec.StorageClassName), ptrValue(claim.Spec.StorageClassName); class != want {
		return nil, fmt.Errorf("%w: clone source claim %s/%s is of class %q, not %q: only a claim of the same class can be cloned", errInvalid, claim.Namespace, name, class, want)
	}
	if src.Status.Phase != v1.ClaimBound || src.Spec.VolumeName == "" {
		return nil, fmt.Errorf("clone source claim %s/%s is not Bound yet", claim.Namespace, name)
	}
	pv, err := p.opts.Client.CoreV1().PersistentVolumes().Get(ctx, src.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("clone source PV %s: %w", src.Spec.VolumeName, err)
	}
	if !p.Owns(pv) {
		return nil, fmt.Errorf("%w: clone source claim %s/%s is bound to PV %s, which is not of this provisioner's store", errInvalid, claim.Namespace, name, pv.Name)
	}
	v, problems, err := p.volumeOf(pv)
	if err != nil {
		return nil, fmt.Errorf("clone source PV %s: %w", pv.Name, err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("clone source PV %s: %v", pv.Name, problems)
	}
	if v.kind != kind {
		return nil, fmt.Errorf("%w: clone source PV %s is a %s volume, and the class makes %s volumes", errInvalid, pv.Name, v.kind, kind)
	}
	size := pv.Spec.Capacity[v1.ResourceStorage]
	request := claim.Spec.Resources.Requests[v1.ResourceStorage]
	if request.Cmp(size) < 0 {
		return nil, fmt.Errorf("%w: the clone requests %s, less than its source's %s", errInvalid, request.String(), size.String())
	}
	return &cloneSource{claim: claim.Namespace + "/" + name, pv: pv.Name, name: v.name, size: size.Value()}, nil
}

// cloneProgress reports a long copy on the claim, at most every
// cloneProgressEvery.
func (p *Provisioner) cloneProgress(claim *v1.PersistentVolumeClaim, src *cloneSource) storage.Progress {
	if src == nil || p.opts.Recorder == nil {
		return nil
	}
	var mu sync.Mutex
	last := p.opts.Clock.Now()
	return func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		now := p.opts.Clock.Now()
		if now.Sub(last) < cloneProgressEvery {
			return
		}
		last = now
		pct := 100.0
		if total > 0 {
			pct = float64(done) * 100 / float64(total)
		}
		p.opts.Recorder.Eventf(claim, v1.EventTypeNormal, ReasonCloneProgress, "cloning %s: %d of %d bytes copied (%.0f%%)", src.claim, done, total, pct)
	}
}

func ptrValue(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
