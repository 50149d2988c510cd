package fscopy

import "time"

// defaultProgressInterval bounds how often a progress callback runs: clone
// progress ends up in Kubernetes events, which must not be flooded.
const defaultProgressInterval = time.Second

// progress counts bytes done against a total and calls fn at most once per
// interval, plus once at the end. It is used by one goroutine only.
type progress struct {
	fn       func(done, total int64)
	done     int64
	total    int64
	interval time.Duration
	last     time.Time
}

func newProgress(fn func(done, total int64), total int64, interval time.Duration) *progress {
	return &progress{fn: fn, total: total, interval: interval, last: time.Now()}
}

// add records n more bytes done.
func (p *progress) add(n int64) {
	p.done += n
	if p.done > p.total {
		// A live source grew after the total was measured: never report more
		// than 100%.
		p.total = p.done
	}
	if p.fn == nil || n == 0 {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= p.interval {
		p.last = now
		p.fn(p.done, p.total)
	}
}

// finish reports completion: the last call always has done == total, even
// when a live source shrank after the total was measured.
func (p *progress) finish() {
	p.total = p.done
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}
