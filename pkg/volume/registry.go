package volume

import (
	"fmt"
	"sync"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// volumeRecord is what the provisioner knows of one volume a PV names.
type volumeRecord struct {
	id   uint16
	name string
	kind storage.Kind
}

// registry maps export IDs and volume names to PVs. It is rebuilt from the
// PVs by every reconciliation and kept current by Provision and Delete, so an
// ID that a PV or a live export holds is never handed out again, and IDs go on
// from the store's high-water mark across restarts instead of being reused.
type registry struct {
	mu      sync.Mutex
	byPV    map[string]volumeRecord // PV name -> record
	owner   map[uint16]string       // export ID -> PV name
	foreign map[uint16]bool         // IDs live in ganesha that no volume of ours holds
	last    uint16                  // the ID handed out last
	// persist records a high-water mark in the store before an ID up to it
	// is handed out; IDs in (markFrom, mark] are covered by the last one.
	persist        func(uint16) error
	markFrom, mark uint16
}

// markStep is how far the recorded high-water mark runs ahead.
const markStep = 64

func newRegistry(last uint16, persist func(uint16) error) *registry {
	return &registry{byPV: map[string]volumeRecord{}, owner: map[uint16]string{}, foreign: map[uint16]bool{}, last: last, persist: persist}
}

// lookup returns the record of PV pv.
func (r *registry) lookup(pv string) (volumeRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.byPV[pv]
	return rec, ok
}

// ownerOf returns the PV that holds export ID id.
func (r *registry) ownerOf(id uint16) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pv, ok := r.owner[id]
	return pv, ok
}

// count is the number of volumes recorded.
func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byPV)
}

// reserve gives PV pv a free export ID, or the one it already has. A new
// volume past max (when max >= 0) is refused here, under the same lock that
// hands out the ID, so concurrent provisions cannot overshoot the limit. IDs
// are handed out in a circle from the store's high-water mark rather than
// lowest-first, so that the ID of a volume just deleted is not reused while
// old clients may still hold its file handles, not even after a restart.
func (r *registry) reserve(pv string, rec volumeRecord, max int) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byPV[pv]; ok {
		return old.id, nil
	}
	if max >= 0 && len(r.byPV) >= max {
		return 0, fmt.Errorf("the provisioner's limit of %d exports (-max-exports) is reached", max)
	}
	for i := 0; i < ganesha.SentinelExportID-1; i++ {
		// 1..65534: 0 is ganesha's pseudo root, 65535 its sentinel.
		id := uint16(int(r.last)%(ganesha.SentinelExportID-1) + 1)
		if _, taken := r.owner[id]; taken || r.foreign[id] {
			r.last = id
			continue
		}
		if r.persist != nil && (id > r.mark || id <= r.markFrom) {
			// The mark runs ahead of the IDs handed out, so that a burst of
			// claims syncs it once per markStep IDs rather than once each;
			// after a restart IDs go on from the mark, skipping the rest.
			mark := uint16(min(int(id)+markStep-1, ganesha.SentinelExportID-1))
			if err := r.persist(mark); err != nil {
				return 0, fmt.Errorf("record the export ID high-water mark: %w", err)
			}
			r.markFrom, r.mark = id-1, mark
		}
		r.last = id
		rec.id = id
		r.byPV[pv] = rec
		r.owner[id] = pv
		return id, nil
	}
	return 0, fmt.Errorf("no free NFS export ID: all %d are in use", ganesha.SentinelExportID-1)
}

// claim records that PV pv holds rec.id. It fails when another PV holds it.
func (r *registry) claim(pv string, rec volumeRecord) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if other, ok := r.owner[rec.id]; ok && other != pv {
		return fmt.Errorf("export ID %d is held by both %s and %s", rec.id, other, pv)
	}
	if old, ok := r.byPV[pv]; ok && old.id != rec.id && r.owner[old.id] == pv {
		delete(r.owner, old.id)
	}
	r.byPV[pv] = rec
	r.owner[rec.id] = pv
	delete(r.foreign, rec.id)
	if rec.id > r.last {
		r.last = rec.id // a store from before the mark: go on from the highest ID in use
	}
	return nil
}

// markForeign keeps id from being handed out: ganesha serves it for
// something that is not one of our volumes.
func (r *registry) markForeign(id uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.foreign[id] = true
}

// release forgets PV pv and frees its ID.
func (r *registry) release(pv string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.byPV[pv]; ok {
		delete(r.byPV, pv)
		if r.owner[rec.id] == pv {
			delete(r.owner, rec.id)
		}
	}
}

// snapshot copies the PV -> record map.
func (r *registry) snapshot() map[string]volumeRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]volumeRecord, len(r.byPV))
	for k, v := range r.byPV {
		out[k] = v
	}
	return out
}

// keyedMutex serialises work on one key (a PV name) while work on other
// keys goes on.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l, ok := k.locks[key]
	if !ok {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
