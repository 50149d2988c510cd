// Package idletrim gives a program's memory back to the node once it has
// been idle for a while.
//
// After a burst of work a Go program keeps what the burst made it grow
// to: freed heap is returned to the kernel slowly, and the pages of code
// and read-only data the burst ran stay mapped (and counted in its RSS)
// until memory pressure reclaims them. The provisioner is idle most of its
// life, and its RSS between bursts is what an operator sees. With 1000
// volumes it stayed near 49 MB after a burst; given back once the burst
// was over, 27 MB (docs/performance.md).
package idletrim

import (
	"context"
	"runtime/debug"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nfs-provisioner/nfs-provisioner/internal/exepages"
)

// Trimmer calls its trim function once per idle spell: when quiet has
// passed since the last Touch. Create it with New and start Run.
type Trimmer struct {
	quiet   time.Duration
	clock   clock.Clock
	trim    func()
	touched chan struct{}
	armed   func() // tests: called when Run has restarted the wait
}

// New returns a Trimmer that calls trim once quiet has passed without a
// Touch. A nil clock is the real one.
func New(quiet time.Duration, clk clock.Clock, trim func()) *Trimmer {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Trimmer{quiet: quiet, clock: clk, trim: trim, touched: make(chan struct{}, 1)}
}

// Touch says that work is going on. It never blocks: safe to call from any
// goroutine, as often as work happens.
func (t *Trimmer) Touch() {
	select {
	case t.touched <- struct{}{}:
	default:
	}
}

// Run trims after each idle spell until ctx ends. Nothing happens before
// the first Touch, and one trim per spell: a program that stays idle is not
// collected again and again. (The provisioner's periodic reconciliation
// pass, every minute by default, is work: it faults back the code it runs
// and allocates a List of every PV, so each pass starts a spell.)
func (t *Trimmer) Run(ctx context.Context) {
	var timer clock.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.touched:
			if timer != nil {
				timer.Stop()
			}
			timer = t.clock.NewTimer(t.quiet)
			fire = timer.C()
			if t.armed != nil {
				t.armed()
			}
		case <-fire:
			fire = nil
			t.trim()
		}
	}
}

// GiveBack returns the heap's free memory to the kernel (a full garbage
// collection first) and drops the mappings of the executable's read-only
// pages (see exepages; a page still in use comes back on its next touch,
// from the page cache). It costs one collection: milliseconds with the
// provisioner's heap of about 14 MB with 1000 volumes.
func GiveBack(ctx context.Context) {
	start := time.Now()
	debug.FreeOSMemory()
	n, err := exepages.Release()
	logger := klog.FromContext(ctx)
	if err != nil {
		logger.V(2).Info("Could not give back the executable's pages", "err", err.Error())
	}
	logger.V(4).Info("Gave memory back after an idle spell", "executablePages", n, "took", time.Since(start))
}
