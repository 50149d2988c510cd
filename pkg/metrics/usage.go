package metrics

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
)

// usageScanner walks directory volumes for the bytes they use, as du does,
// at most rate files per second, and starts a new pass interval after the
// previous one ended. A directory volume has no size of its own to statfs:
// it shares the store's filesystem.
type usageScanner struct {
	interval time.Duration
	rate     int

	mu      sync.Mutex
	used    map[string]int64 // by PV
	lastEnd time.Time
	lastDur time.Duration
}

func newUsageScanner(interval time.Duration, rate int) *usageScanner {
	return &usageScanner{interval: interval, rate: rate, used: map[string]int64{}}
}

func (s *usageScanner) get(pv string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.used[pv]
	return n, ok
}

func (s *usageScanner) last() (time.Time, time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastEnd, s.lastDur, !s.lastEnd.IsZero()
}

func (s *usageScanner) run(ctx context.Context, list func() []volume.VolumeInfo) {
	logger := klog.FromContext(ctx).WithName("usage-scan")
	for {
		start := time.Now()
		n, err := s.scanOnce(ctx, list())
		if err != nil {
			return // ctx ended
		}
		logger.V(4).Info("Scanned directory volumes", "volumes", n, "duration", time.Since(start))
		t := time.NewTimer(s.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// scanOnce measures every served directory volume and forgets volumes that
// are gone. It returns how many it measured; its error is ctx's.
func (s *usageScanner) scanOnce(ctx context.Context, vols []volume.VolumeInfo) (int, error) {
	start := time.Now()
	p := &pacer{rate: s.rate, start: start}
	fresh := map[string]int64{}
	for _, v := range vols {
		if (v.Kind != storage.Directory && v.Kind != "") || v.Path == "" {
			continue
		}
		n, err := dirUsage(ctx, v.Path, p)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Cannot measure a directory volume", "pv", v.PV, "path", v.Path, "err", err)
			continue
		}
		fresh[v.PV] = n
	}
	s.mu.Lock()
	s.used = fresh
	s.lastEnd = time.Now()
	s.lastDur = s.lastEnd.Sub(start)
	s.mu.Unlock()
	return len(fresh), nil
}

// dirUsage sums the allocated bytes (st_blocks) of everything under root,
// each inode once, without following symlinks or crossing into other
// filesystems. Entries that vanish or cannot be read during the walk are
// skipped: the result is an estimate by nature.
func dirUsage(ctx context.Context, root string, p *pacer) (int64, error) {
	rootInfo, err := os.Lstat(root)
	if err != nil {
		return 0, err
	}
	rootSt, ok := rootInfo.Sys().(*syscall.Stat_t)
	if !ok || !rootInfo.IsDir() {
		return 0, errors.New("not a directory")
	}
	type inode struct{ dev, ino uint64 }
	var seen map[inode]bool // only for files with more than one link
	var total int64
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return nil // vanished or unreadable: skip
		}
		if err := p.wait(ctx); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Dev != rootSt.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && st.Nlink > 1 {
			if seen == nil {
				seen = map[inode]bool{}
			}
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// pacer lets a walk look at no more than rate entries per second on
// average, sleeping when it is ahead.
type pacer struct {
	rate  int
	start time.Time
	n     int64
}

func (p *pacer) wait(ctx context.Context) error {
	p.n++
	due := p.start.Add(time.Duration(p.n * int64(time.Second) / int64(p.rate)))
	d := time.Until(due)
	if d <= time.Millisecond {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
