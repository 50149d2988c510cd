package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// Targets (issue: the provisioner): 1000 claims Bound within 30 s, restart
// with 1000 volumes served within 5 s, provisioner RSS at most 80 MB.
// Issue 11 (footprint): RSS at most 40 MB with 300 volumes and 35 MB with
// 1000 while claims bind within 1.5x the control plane's floor, measured in
// the same run. They are reported, never asserted: run `make bench`.

func BenchmarkBurst100(b *testing.B)  { benchmarkBurst(b, 100) }
func BenchmarkBurst300(b *testing.B)  { benchmarkBurst(b, 300) }
func BenchmarkBurst1000(b *testing.B) { benchmarkBurst(b, 1000) }

// benchmarkBurst creates n claims at once and reports the time until all are
// Bound, the per-claim latency from create to Bound (p50, p99), the
// provisioner's memory once they are (RSS, split into anonymous memory and
// the mapped executable, and its peak), its CPU time during the burst,
// ganesha's RSS, and the provisioner's RSS once it has been idle. Then it
// measures the control plane's floor for n claims (bindFloor) and reports
// the burst against it. The floor comes after the
// memory is read, so that the provisioner's caches hold the burst's objects
// only.
func benchmarkBurst(b *testing.B, n int) {
	for range b.N {
		env := benchEnv(b)
		c, ns, p, class := env.c, env.ns, env.p, env.class
		b.Cleanup(func() { deletePVsOf(b, c, p.cfg.Name) })

		cpu0, err := framework.CPUOf(p.proc.PID())
		if err != nil {
			b.Fatal(err)
		}
		r := burst(b, c, ns, class, n)
		mem, err := framework.MemoryOf(p.proc.PID())
		if err != nil {
			b.Fatal(err)
		}
		cpu, err := framework.CPUOf(p.proc.PID())
		if err != nil {
			b.Fatal(err)
		}
		cpu -= cpu0
		ganeshaRSS := int64(0)
		if pid, err := framework.ChildNamed(p.proc.PID(), "ganesha.nfsd"); err != nil {
			b.Logf("ganesha's memory not read: %v", err)
		} else if g, err := framework.MemoryOf(pid); err != nil {
			b.Logf("ganesha's memory not read: %v", err)
		} else {
			ganeshaRSS = g.RSS
		}
		heap := goMemstats(b, p)
		// Idle: what an operator sees between bursts, once the provisioner
		// has given memory back (10 s after its last operation or
		// reconciliation pass; internal/idletrim), seen as its file pages
		// gone; at most a minute later, when the figure is what is left.
		// Before the floor's claims, whose PVs would wake the reconciler.
		idleStart := time.Now()
		var idle framework.Memory
		for {
			if idle, err = framework.MemoryOf(p.proc.PID()); err != nil {
				b.Fatal(err)
			}
			if idle.File < mem.File/2 || time.Since(idleStart) > time.Minute {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		idleAfter := time.Since(idleStart)
		if idle.File >= mem.File/2 {
			b.Logf("the provisioner kept its file pages for %v after the burst: the figure once idle is not after a trim", idleAfter.Round(time.Second))
		}
		floor := bindFloor(b, env, n)

		timing := reportBurst(b, r, floor)
		b.ReportMetric(float64(percentile(r.latencies, 50).Milliseconds()), "ms-p50")
		b.ReportMetric(float64(mem.RSS)/1e6, "MB-provisioner-RSS")
		b.ReportMetric(float64(mem.Anon)/1e6, "MB-provisioner-anon")
		b.ReportMetric(float64(mem.File)/1e6, "MB-provisioner-file")
		b.ReportMetric(float64(mem.PeakRSS)/1e6, "MB-provisioner-peak")
		b.ReportMetric(float64(idle.RSS)/1e6, "MB-provisioner-RSS-idle")
		b.ReportMetric(float64(ganeshaRSS)/1e6, "MB-ganesha-RSS")
		b.ReportMetric(cpu.Seconds(), "s-provisioner-CPU")
		b.ReportMetric(heap["next_gc_bytes"]/1e6, "MB-heap-goal")
		b.ReportMetric(heap["heap_inuse_bytes"]/1e6, "MB-heap-inuse")
		b.Logf("%d claims: %s; per claim p50 %v; provisioner RSS %.1f MB (anon %.1f, file %.1f, peak %.1f, heap goal %.1f), CPU %.1f s during the burst; ganesha RSS %.1f MB; provisioner RSS once idle (%v later) %.1f MB (anon %.1f, file %.1f)",
			n, timing, percentile(r.latencies, 50),
			float64(mem.RSS)/1e6, float64(mem.Anon)/1e6, float64(mem.File)/1e6, float64(mem.PeakRSS)/1e6, heap["next_gc_bytes"]/1e6, cpu.Seconds(), float64(ganeshaRSS)/1e6,
			idleAfter.Round(time.Second), float64(idle.RSS)/1e6, float64(idle.Anon)/1e6, float64(idle.File)/1e6)
	}
}

// benchEnv is newTestEnv with the environment in $BENCH_PROVISIONER_ENV
// (comma-separated KEY=value, e.g. GOMEMLIMIT=24MiB,GOGC=50) given to the
// provisioner alone, so that a runtime setting can be measured without
// changing the control plane's.
func benchEnv(b *testing.B) testEnv {
	extra := map[string]string{}
	for _, kv := range strings.Split(os.Getenv("BENCH_PROVISIONER_ENV"), ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			extra[k] = v
		}
	}
	if len(extra) == 0 {
		return newTestEnv(b)
	}
	b.Logf("provisioner environment: %v", extra)
	c := framework.Shared(b)
	ns := c.Namespace(b)
	p := startProvisioner(b, c, provisionerConfig{Namespace: ns, Env: extra})
	class := ns + "-class"
	storageClass(b, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	return testEnv{c: c, ns: ns, p: p, class: class}
}

// BenchmarkRestart1000 makes 1000 volumes, restarts the provisioner, and
// reports the time from the new process's start until ganesha serves all
// 1000 exports again and /readyz answers.
func BenchmarkRestart1000(b *testing.B) {
	const n = 1000
	for range b.N {
		env := newTestEnv(b)
		c, ns, p, class := env.c, env.ns, env.p, env.class
		b.Cleanup(func() { deletePVsOf(b, c, p.cfg.Name) })
		burst(b, c, ns, class, n)
		rss, _ := p.proc.RSS()

		for _, how := range []string{"SIGTERM", "SIGKILL"} {
			if how == "SIGKILL" {
				p.kill9()
			} else if err := p.proc.Stop(framework.DefaultStopGrace); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			p.restart() // returns once /readyz answers
			ready := time.Since(start)
			if got := len(p.exports(context.Background())); got != n {
				b.Fatalf("after restart ganesha serves %d exports, want %d", got, n)
			}
			served := time.Since(start)
			b.ReportMetric(served.Seconds(), "s-served-after-"+how)
			b.Logf("restart after %s with %d volumes: ready in %v, all %d exports served in %v", how, n, ready.Round(time.Millisecond), n, served.Round(time.Millisecond))
		}
		b.ReportMetric(float64(rss)/1e6, "MB-provisioner-RSS")
	}
}

// reportBurst reports a burst's timing against the control plane's floor
// and returns it as words for the log.
func reportBurst(b *testing.B, r burstResult, floor time.Duration) string {
	b.ReportMetric(r.total.Seconds(), "s-all-bound")
	b.ReportMetric(floor.Seconds(), "s-floor")
	b.ReportMetric(r.total.Seconds()/floor.Seconds(), "x-floor")
	b.ReportMetric(float64(percentile(r.latencies, 99).Milliseconds()), "ms-p99")
	words := fmt.Sprintf("all Bound in %v (%.2fx the floor of %v), per claim p99 %v",
		r.total.Round(time.Millisecond), r.total.Seconds()/floor.Seconds(), floor.Round(time.Millisecond), percentile(r.latencies, 99).Round(time.Millisecond))
	if r.lastPV > 0 {
		b.ReportMetric(r.lastPV.Seconds(), "s-last-PV")
		words += fmt.Sprintf("; last PV made at %v, then the control plane bound the rest in %v",
			r.lastPV.Round(time.Millisecond), (r.total - r.lastPV).Round(time.Millisecond))
	}
	return words
}

// burstResult is what burst measured.
type burstResult struct {
	// total is the wall time from the first claim's creation until all are
	// Bound.
	total time.Duration
	// lastPV is when the last of the burst's PVs was created, from the
	// same start (0 when the watch of PVs was lost). What follows it,
	// total-lastPV, is the control plane's alone: binding the last PVs.
	lastPV time.Duration
	// latencies are each claim's create-to-Bound times.
	latencies []time.Duration
}

// burst creates n claims of class (named <class>-c-<i>) from 16 goroutines
// and waits until all are Bound.
func burst(b *testing.B, c *framework.Cluster, ns, class string, n int) burstResult {
	b.Helper()
	ctx := context.Background()
	w, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { w.Stop() }()
	lastPV := watchPVsOf(b, c, class, n)

	var mu sync.Mutex
	created := map[string]time.Time{}
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 16 {
				name := fmt.Sprintf("%s-c-%d", class, i)
				t0 := time.Now()
				if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, framework.Claim(ns, name, class, "1Mi"), metav1.CreateOptions{}); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				created[name] = t0
				mu.Unlock()
			}
		}()
	}

	// The API server may close a watch at any time (it drops watchers it
	// judges too slow during a burst); then catch up with a List and watch
	// again from there. A claim first seen Bound in such a List is timed at
	// the List, a little late, never early.
	bound := map[string]time.Time{}
	timeout := time.After(10 * time.Minute)
	for len(bound) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				list, err := c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					b.Fatal(err)
				}
				for _, pvc := range list.Items {
					if _, seen := bound[pvc.Name]; !seen && pvc.Status.Phase == v1.ClaimBound && strings.HasPrefix(pvc.Name, class+"-c-") {
						bound[pvc.Name] = time.Now()
					}
				}
				if w, err = c.Client.CoreV1().PersistentVolumeClaims(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion}); err != nil {
					b.Fatal(err)
				}
				continue
			}
			pvc, isClaim := ev.Object.(*v1.PersistentVolumeClaim)
			if ev.Type == watch.Modified && isClaim && pvc.Status.Phase == v1.ClaimBound && strings.HasPrefix(pvc.Name, class+"-c-") {
				if _, seen := bound[pvc.Name]; !seen {
					bound[pvc.Name] = time.Now()
				}
			}
		case <-timeout:
			b.Fatalf("only %d of %d claims Bound after 10 minutes", len(bound), n)
		}
	}
	total := time.Since(start)
	wg.Wait()
	var latencies []time.Duration
	for name, at := range bound {
		latencies = append(latencies, at.Sub(created[name]))
	}
	r := burstResult{total: total, latencies: latencies}
	if at := lastPV(); !at.IsZero() {
		r.lastPV = at.Sub(start)
	}
	return r
}

// watchPVsOf watches for the n PVs of class that are about to be made;
// last returns when the n-th was seen, zero if the watch ended before.
func watchPVsOf(b *testing.B, c *framework.Cluster, class string, n int) (last func() time.Time) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	list, err := c.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	w, err := c.Client.CoreV1().PersistentVolumes().Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	var at time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := 0
		for ev := range w.ResultChan() {
			if pv, ok := ev.Object.(*v1.PersistentVolume); ok && ev.Type == watch.Added && pv.Spec.StorageClassName == class {
				if seen++; seen == n {
					at = time.Now()
					return
				}
			}
		}
	}()
	stop := sync.OnceFunc(func() {
		w.Stop()
		cancel()
		<-done
	})
	b.Cleanup(stop) // a burst that fails stops the watch too
	return func() time.Time {
		// The PV watch is a stream of its own: its last event may come
		// after the last claim was seen Bound.
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
		stop()
		return at
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

// goMemstats reads the provisioner's go_memstats_* gauges from its /metrics.
// next_gc_bytes, the heap goal, follows the heap that was live at the last
// collection (twice it, with GOGC=100, unless GOMEMLIMIT is nearer), so it
// shows what a change to the live heap buys with less noise than RSS.
func goMemstats(b *testing.B, p *testProvisioner) map[string]float64 {
	b.Helper()
	return metricSamples(b, p, "go_memstats_")
}

// meanSeconds is the mean of the histogram samples (name_sum, name_count)
// whose labels start with labels, e.g. `method="AddExport"`.
func meanSeconds(samples map[string]float64, name, labels string) (time.Duration, int) {
	var sum, count float64
	for k, v := range samples {
		switch {
		case strings.HasPrefix(k, name+"_sum{"+labels):
			sum += v
		case strings.HasPrefix(k, name+"_count{"+labels):
			count += v
		}
	}
	if count == 0 {
		return 0, 0
	}
	return time.Duration(sum / count * float64(time.Second)), int(count)
}

// deletePVsOf removes the PVs a benchmark's provisioner left, so later
// benchmarks on the shared cluster do not pay for them.
func deletePVsOf(b *testing.B, c *framework.Cluster, provisioner string) {
	ctx := context.Background()
	pvs, err := c.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Logf("list PVs: %v", err)
		return
	}
	for _, pv := range pvs.Items {
		if pv.Annotations["pv.kubernetes.io/provisioned-by"] == provisioner {
			_ = c.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
		}
	}
}
