package volume

import (
	"fmt"
	"sync"
)

// volumeRecord is what the provisioner knows of one volume it made.
type volumeRecord struct {
	id  uint16
	dir string
}

// registry maps export IDs to volumes. It is rebuilt from the PVs at start-up
// (Reconcile) and kept current by Provision and Delete, so an ID that a PV or
// a live export still holds is never handed out again.
type registry struct {
	mu      sync.Mutex
	byPV    map[string]volumeRecord // PV name -> record
	owner   map[uint16]string       // export ID -> PV name
	foreign map[uint16]bool         // IDs live in ganesha that no volume of ours holds
	last    uint16                  // the ID handed out last
}

func newRegistry() *registry {
	return &registry{byPV: map[string]volumeRecord{}, owner: map[uint16]string{}, foreign: map[uint16]bool{}}
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

// reserve gives PV pv a free export ID, or the one it already has. IDs are
// handed out in a circle rather than lowest-first, so that the ID of a volume
// just deleted is not reused at once while old clients may still hold its
// file handles.
func (r *registry) reserve(pv, dir string) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.byPV[pv]; ok {
		return rec.id, nil
	}
	for i := 0; i < 65535; i++ {
		id := uint16(int(r.last)%65535 + 1) // 1..65535; 0 is ganesha's pseudo root
		r.last = id
		if _, taken := r.owner[id]; taken || r.foreign[id] {
			continue
		}
		r.byPV[pv] = volumeRecord{id: id, dir: dir}
		r.owner[id] = pv
		return id, nil
	}
	return 0, fmt.Errorf("no free NFS export ID: all 65535 are in use")
}

// claim records that PV pv holds id. It fails when another PV holds it.
func (r *registry) claim(pv, dir string, id uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if other, ok := r.owner[id]; ok && other != pv {
		return fmt.Errorf("export ID %d is held by both %s and %s", id, other, pv)
	}
	if old, ok := r.byPV[pv]; ok && old.id != id {
		delete(r.owner, old.id)
	}
	r.byPV[pv] = volumeRecord{id: id, dir: dir}
	r.owner[id] = pv
	delete(r.foreign, id)
	if id > r.last {
		r.last = id // after a restart, go on from the highest ID in use
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
