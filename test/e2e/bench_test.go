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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
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
// the mapped executable, and its peak), the CPU time spent during the
// burst (reportBurst), ganesha's RSS, and the provisioner's RSS once it has
// been idle; all against the control plane's floor for n claims, measured
// first (bindFloor), whose objects are gone before the burst starts. The
// provisioner's informers saw those come and go, so its peak RSS and heap
// goal may hold some of them.
func benchmarkBurst(b *testing.B, n int) {
	for range b.N {
		env := benchEnv(b)
		c, p, class := env.c, env.p, env.class
		b.Cleanup(func() { deletePVsOf(b, c, p.cfg.Name) })

		floor := bindFloor(b, env, n)
		r := burst(b, env, class, n)
		mem, err := framework.MemoryOf(p.proc.PID())
		if err != nil {
			b.Fatal(err)
		}
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
		timing := reportBurst(b, r, floor)
		b.ReportMetric(float64(percentile(r.latencies, 50).Milliseconds()), "ms-p50")
		b.ReportMetric(float64(mem.RSS)/1e6, "MB-provisioner-RSS")
		b.ReportMetric(float64(mem.Anon)/1e6, "MB-provisioner-anon")
		b.ReportMetric(float64(mem.File)/1e6, "MB-provisioner-file")
		b.ReportMetric(float64(mem.PeakRSS)/1e6, "MB-provisioner-peak")
		b.ReportMetric(float64(idle.RSS)/1e6, "MB-provisioner-RSS-idle")
		b.ReportMetric(float64(ganeshaRSS)/1e6, "MB-ganesha-RSS")
		b.ReportMetric(heap["next_gc_bytes"]/1e6, "MB-heap-goal")
		b.ReportMetric(heap["heap_inuse_bytes"]/1e6, "MB-heap-inuse")
		b.Logf("%d claims: %s; per claim p50 %v; provisioner RSS %.1f MB (anon %.1f, file %.1f, peak %.1f, heap goal %.1f); ganesha RSS %.1f MB; provisioner RSS once idle (%v later) %.1f MB (anon %.1f, file %.1f)",
			n, timing, percentile(r.latencies, 50),
			float64(mem.RSS)/1e6, float64(mem.Anon)/1e6, float64(mem.File)/1e6, float64(mem.PeakRSS)/1e6, heap["next_gc_bytes"]/1e6, float64(ganeshaRSS)/1e6,
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
		c, p, class := env.c, env.p, env.class
		b.Cleanup(func() { deletePVsOf(b, c, p.cfg.Name) })
		burst(b, env, class, n)
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
func reportBurst(b *testing.B, r, floor burstResult) string {
	b.ReportMetric(r.total.Seconds(), "s-all-bound")
	b.ReportMetric(floor.total.Seconds(), "s-floor")
	b.ReportMetric(r.total.Seconds()/floor.total.Seconds(), "x-floor")
	b.ReportMetric(float64(percentile(r.latencies, 99).Milliseconds()), "ms-p99")
	b.ReportMetric(floor.cpu.controlPlane.Seconds(), "s-CPU-control-plane-floor")
	b.ReportMetric(r.cpu.controlPlane.Seconds(), "s-CPU-control-plane")
	b.ReportMetric(r.cpu.provisioner.Seconds(), "s-CPU-provisioner-tree")
	b.ReportMetric(100*r.cpu.busy(), "%-machine-busy")
	words := fmt.Sprintf("all Bound in %v (%.2fx the floor of %v), per claim p99 %v; CPU time during the burst: %v; during the floor's: %v",
		r.total.Round(time.Millisecond), r.total.Seconds()/floor.total.Seconds(), floor.total.Round(time.Millisecond), percentile(r.latencies, 99).Round(time.Millisecond), r.cpu, floor.cpu)
	if r.lastPV > 0 {
		b.ReportMetric(r.lastPV.Seconds(), "s-last-PV")
		words += fmt.Sprintf("; last PV made at %v, then the control plane bound the rest in %v",
			r.lastPV.Round(time.Millisecond), (r.total - r.lastPV).Round(time.Millisecond))
	}
	return words
}

// bindFloor is how long the control plane itself takes to bind n claims to
// n matching PVs that exist already: no provisioner can be faster. It runs
// before the burst it is compared with, and returns once its claims and PVs
// are gone: the control plane's work of deleting them (finalizers, PVs
// Released) would otherwise overlap the burst and be charged to it, and
// their objects would slow the binder, which scans every PV for each
// claim it syncs. Each run then starts from the same state; with b.N above
// one, the volumes of earlier runs are still there (they go at cleanup),
// so use -benchtime 1x.
func bindFloor(b *testing.B, env testEnv, n int) burstResult {
	b.Helper()
	c, ns := env.c, env.ns
	class := ns + "-static"
	storageClass(b, c, class, "kubernetes.io/no-provisioner", nil, v1.PersistentVolumeReclaimRetain)
	ctx := context.Background()
	name := func(i int) string { return fmt.Sprintf("%s-static-%d", ns, i) }
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < n; i += 16 {
				pv := &v1.PersistentVolume{
					ObjectMeta: metav1.ObjectMeta{Name: name(i)},
					Spec: v1.PersistentVolumeSpec{
						StorageClassName:              class,
						AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
						Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Mi")},
						PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
						PersistentVolumeSource:        v1.PersistentVolumeSource{NFS: &v1.NFSVolumeSource{Server: "127.0.0.1", Path: "/floor"}},
					},
				}
				if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() { // a PV is missing: its claim would wait out burst's timeout
		b.FailNow()
	}
	deletePVs := func() {
		for i := range n {
			if err := c.Client.CoreV1().PersistentVolumes().Delete(ctx, name(i), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				b.Errorf("delete PV %s: %v", name(i), err)
			}
		}
	}
	b.Cleanup(deletePVs) // when the burst fails
	r := burst(b, env, class, n)

	if err := c.Client.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	deletePVs()
	framework.Eventually(b, 2*time.Minute, "the floor's claims and PVs gone", func() (bool, error) {
		claims, err := c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		pvs, err := c.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		left := len(claims.Items)
		for _, pv := range pvs.Items {
			if pv.Spec.StorageClassName == class {
				left++
			}
		}
		return left == 0, nil
	})
	return r
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
	// cpu is the CPU time spent meanwhile, by whom.
	cpu cpuUse
}

// cpuUse is CPU time by whom. On a machine of few cores the control plane
// binds claims only as fast as the CPU it gets, so what the provisioner,
// its ganesha and the kernel spend for it during a burst slows the binder.
type cpuUse struct {
	// controlPlane is etcd's, kube-apiserver's and
	// kube-controller-manager's.
	controlPlane time.Duration
	// provisioner is the provisioner's with its children: ganesha, and
	// every mkfs, mount or fsck it ran.
	provisioner time.Duration
	// test is this benchmark's own: creating claims, watching.
	test time.Duration
	// machine is all CPUs' busy time: the above, the kernel's threads
	// (loop devices, filesystems' workers) and anything else. It and the
	// processes' times are kept by different clocks, so the parts do not
	// add up to it exactly (within about a second per ten).
	machine time.Duration
	// cpus is how many CPUs the machine has online.
	cpus int
	// wall is the time they were measured over (in a difference); at,
	// when (in a reading).
	wall time.Duration
	at   time.Time
}

func cpuNow(b *testing.B, env testEnv) cpuUse {
	b.Helper()
	var u cpuUse
	var err error
	if u.controlPlane, err = env.c.CPU(); err != nil {
		b.Fatal(err)
	}
	if u.provisioner, err = framework.TreeCPUOf(env.p.proc.PID()); err != nil {
		b.Fatal(err)
	}
	if u.test, err = framework.CPUOf(os.Getpid()); err != nil {
		b.Fatal(err)
	}
	if u.machine, u.cpus, err = framework.MachineCPU(); err != nil {
		b.Fatal(err)
	}
	u.at = time.Now()
	return u
}

func (u cpuUse) since(v cpuUse) cpuUse {
	return cpuUse{u.controlPlane - v.controlPlane, u.provisioner - v.provisioner, u.test - v.test, u.machine - v.machine, u.cpus, u.at.Sub(v.at), time.Time{}}
}

// busy is the share of the machine's CPUs that was busy: near 1, the
// burst was bound by CPU, and any CPU time saved is time saved.
func (u cpuUse) busy() float64 {
	return u.machine.Seconds() / (u.wall.Seconds() * float64(u.cpus))
}

func (u cpuUse) String() string {
	s := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	return fmt.Sprintf("control plane %s, provisioner with ganesha and its tools %s, this benchmark %s; the machine's %d CPUs %.0f%% busy",
		s(u.controlPlane), s(u.provisioner), s(u.test), u.cpus, 100*u.busy())
}

// burst creates n claims of class (named <class>-c-<i>) in env's namespace
// from 16 goroutines and waits until all are Bound.
func burst(b *testing.B, env testEnv, class string, n int) burstResult {
	b.Helper()
	c, ns := env.c, env.ns
	ctx := context.Background()
	w, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { w.Stop() }()
	lastPV := watchPVsOf(b, c, class, n)

	var mu sync.Mutex
	created := map[string]time.Time{}
	cpu0 := cpuNow(b, env)
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
	cpu := cpuNow(b, env).since(cpu0)
	wg.Wait()
	var latencies []time.Duration
	for name, at := range bound {
		latencies = append(latencies, at.Sub(created[name]))
	}
	r := burstResult{total: total, latencies: latencies, cpu: cpu}
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
