// Package keyed serialises work on one key (a volume name) while work on
// other keys goes on.
package keyed

import "sync"

// Mutex is a lock per key; its zero value is ready to use. A key's entry
// exists only while someone holds or waits for it.
type Mutex struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	mu   sync.Mutex
	refs int
}

// Lock locks key and returns the function that unlocks it.
func (k *Mutex) Lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*entry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &entry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// LockPair locks two keys in a fixed order, so that two callers locking the
// same pair never deadlock; a == b locks once.
func (k *Mutex) LockPair(a, b string) (unlock func()) {
	if a == b {
		return k.Lock(a)
	}
	if b < a {
		a, b = b, a
	}
	ua := k.Lock(a)
	ub := k.Lock(b)
	return func() { ub(); ua() }
}
