package failover

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// HolderKey is the client-metadata key this package puts on its own CephFS
// mounts, with the holder's identity as value, so that a fence can tell its
// own sessions from its predecessor's.
const HolderKey = "nfs_provisioner_holder"

// Scope says which CephFS sessions belong to a store's servers: every
// session whose mount root is one of Paths or below it. A store's servers
// mount only its state directory and its volumes, so their sessions are all
// in scope; other users' sessions (an admin mount of "/") are not.
type Scope struct {
	Paths []string
	// Self is this holder's identity; sessions carrying it are spared.
	Self string
}

// Has reports whether session s is in scope and not ours.
func (sc Scope) Has(s Session) bool {
	if sc.Self != "" && s.Metadata[HolderKey] == sc.Self {
		return false
	}
	root := s.Root()
	if root == "" {
		return false
	}
	root = path.Clean(root)
	for _, p := range sc.Paths {
		p = path.Clean(p)
		if p == "/" {
			continue // never everybody
		}
		if root == p || strings.HasPrefix(root, p+"/") {
			return true
		}
	}
	return false
}

// fenceWorkers is how many evictions run at once: each is a ceph CLI
// process, and the machine may be small.
const fenceWorkers = 4

// Fence evicts, with blocklisting, every session in scope of the MDS ranks
// given (nil: the ranks active now, one more ceph call), and returns once
// a fresh listing shows none left (a client reconnecting after eviction is
// refused by the blocklist, so it cannot come back). It gives up when ctx
// ends; a failed fence must never be followed by serving.
//
// known, when not nil, is a listing taken earlier (by a passive replica
// while it waited): its sessions in scope are evicted first, without
// waiting for a listing, and the listings that follow catch the rest. It
// saves one ceph call on the way to serving; it can never replace the
// listing taken after the Lease was won.
func Fence(ctx context.Context, c Ceph, sc Scope, ranks []int, known []Session) ([]Session, error) {
	logger := klog.FromContext(ctx)
	if len(sc.Paths) == 0 {
		return nil, errors.New("fence: empty scope")
	}
	var evicted []Session
	relooked := false
	for attempt := 1; ; attempt++ {
		if ranks == nil {
			var err error
			if ranks, err = c.Ranks(ctx); err != nil {
				return evicted, fmt.Errorf("fence: %w", err)
			}
		}
		all, err, fresh := known, error(nil), known == nil
		if fresh {
			all, err = c.Sessions(ctx, ranks)
		}
		known = nil
		if err != nil {
			if !relooked {
				// The ranks may have changed since they were looked up.
				logger.Error(err, "Listing sessions failed; looking the MDS ranks up again")
				relooked, ranks = true, nil
				continue
			}
			return evicted, fmt.Errorf("fence: list sessions: %w", err)
		}
		var todo []Session
		for _, s := range all {
			if sc.Has(s) {
				todo = append(todo, s)
			}
		}
		if len(todo) == 0 {
			if fresh {
				return evicted, nil
			}
			continue
		}
		logger.Info("Fencing the store's other servers: evicting their CephFS sessions", "sessions", len(todo), "attempt", attempt)
		errs := make([]error, len(todo))
		sem := make(chan struct{}, fenceWorkers)
		var wg sync.WaitGroup
		for i, s := range todo {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := c.Evict(ctx, s); err != nil {
					errs[i] = fmt.Errorf("evict %s: %w", s, err)
					return
				}
				logger.Info("Evicted and blocklisted", "session", s.String(), "inst", s.Inst)
			}()
		}
		wg.Wait()
		for i, s := range todo {
			if errs[i] == nil {
				evicted = append(evicted, s)
			}
		}
		// An eviction that failed because the session had just gone is
		// fine; the next listing tells.
		if err := errors.Join(errs...); err != nil {
			logger.Error(err, "Some evictions failed; listing again")
		}
		select {
		case <-ctx.Done():
			return evicted, fmt.Errorf("fence: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
