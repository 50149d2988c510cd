package failover

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// writer writes numbered small files over NFSv4 through the Service, one
// nfs-cp each, until stopped, and remembers which were acknowledged. Every
// attempt gets a new name: a write whose answer was lost may or may not
// have landed, and nfs-cp never overwrites.
type writer struct {
	mu       sync.Mutex
	acked    map[string][]byte
	failures int
	lastErr  error
	stop     chan struct{}
	done     chan struct{}
}

func startWriter(t *testing.T, target nfsclient.Target, prefix string) *writer {
	w := &writer{acked: map[string][]byte{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			name := fmt.Sprintf("%s-%05d", prefix, i)
			data := []byte(fmt.Sprintf("record %d of %s, %s\n", i, prefix, time.Now().Format(time.RFC3339Nano)))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := nfsclient.WriteFile(ctx, target, name, data)
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked[name] = data
			} else {
				w.failures++
				w.lastErr = err
			}
			w.mu.Unlock()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	return w
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) finish() (map[string][]byte, int, error) {
	close(w.stop)
	<-w.done
	return w.acked, w.failures, w.lastErr
}

// untilRead retries read until it succeeds and returns when it did.
func untilRead(t *testing.T, what string, timeout time.Duration, read func() error) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = read(); last == nil {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: no successful read within %s: %v", what, timeout, last)
	return time.Time{}
}

// viaNew fails unless the Service forwards to replica 1, the new active:
// a read that reaches the old one proves nothing about the takeover.
func (p *pair) viaNew(read func() error) func() error {
	return func() error {
		if cur := p.svc.Current(); cur == nil || cur.Host != p.replicas[1].host {
			return fmt.Errorf("the Service forwards to %+v, not yet to the new active", cur)
		}
		return read()
	}
}

// checkAcked reads every acknowledged write through the Service (NFSv3, one
// mount) and through CephFS directly.
func checkAcked(t *testing.T, p *pair, pv *v1.PersistentVolume, acked map[string][]byte) {
	t.Helper()
	names := make([]string, 0, len(acked))
	for n := range acked {
		names = append(names, n)
	}
	got, err := nfsclient.ReadFiles(t.Context(), p.target(pv, serviceHost, 3), names)
	if err != nil {
		t.Fatalf("reading the acknowledged writes back: %v", err)
	}
	mnt := p.bed.MountFuse(t, "/", cephbed.Client{})
	dir := filepath.Join(mnt, p.subvolumePath(t, pv))
	for n, want := range acked {
		if !bytes.Equal(got[n], want) {
			t.Errorf("acknowledged write %s over NFS: got %q, want %q", n, got[n], want)
		}
		if onCeph, err := os.ReadFile(filepath.Join(dir, n)); err != nil || !bytes.Equal(onCeph, want) {
			t.Errorf("acknowledged write %s in CephFS: got %q (%v), want %q", n, onCeph, err, want)
		}
	}
	t.Logf("all %d acknowledged writes are there, over NFS and in CephFS", len(acked))
}

// TestFailoverKill: kill -9 of the whole active replica (provisioner,
// ganesha, dbus-daemon, ceph-fuse) while a client writes through the
// Service. The passive replica fences it, takes over and serves the same
// server: a file handle taken before the kill still works (no ESTALE),
// later reads and writes succeed, and every acknowledged write is there.
// The takeover time, from the kill to the first successful read through
// the Service, is printed.
func TestFailoverKill(t *testing.T) {
	p := newPair(t)
	before := []byte("written before the kill\n")
	pv, v3 := p.volumeWith(t, before)
	v4 := p.target(pv, serviceHost, 4)
	raw, err := nfsclient.DialRaw(t.Context(), v3)
	if err != nil {
		t.Fatal(err)
	}
	status, fh, err := raw.Lookup(raw.Root, "before")
	rootBefore := raw.Root
	raw.Close()
	if err != nil || status != 0 {
		t.Fatalf("LOOKUP before: %s %v", nfsclient.StatusName(status), err)
	}

	w := startWriter(t, v4, "w")
	framework.Eventually(t, 30*time.Second, "writes acknowledged before the kill", func() (bool, error) { return w.count() >= 10, nil })

	active := p.replicas[0]
	killed, err := framework.SignalTree(active.proc.PID(), syscall.SIGKILL)
	t0 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	ackedAtKill := w.count()
	t.Logf("killed the active replica's processes %v with %d writes acknowledged", killed, ackedAtKill)

	tv3 := untilRead(t, "NFSv3 read through the Service", 60*time.Second, p.viaNew(func() error {
		got, err := nfsclient.ReadFile(t.Context(), v3, "before")
		if err == nil && !bytes.Equal(got, before) {
			t.Fatalf("read %q, want %q", got, before)
		}
		return err
	}))
	tv4 := untilRead(t, "NFSv4 read through the Service", 60*time.Second, p.viaNew(func() error {
		_, err := nfsclient.ReadFile(t.Context(), v4, "before")
		return err
	}))
	t.Logf("FIGURE takeover (kill -9 of the active to the first successful read through the Service): NFSv3 %s, NFSv4 %s",
		tv3.Sub(t0).Round(time.Millisecond), tv4.Sub(t0).Round(time.Millisecond))
	if !p.replicas[1].ready() {
		t.Fatal("the passive replica serves but is not ready")
	}

	// The handle from before the kill still names the file.
	raw, err = nfsclient.DialRaw(t.Context(), v3)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if !bytes.Equal(raw.Root, rootBefore) {
		t.Errorf("the export's root handle changed across the takeover: %x, was %x", raw.Root, rootBefore)
	}
	if status, attr, err := raw.GetAttr(fh); err != nil || status != 0 {
		t.Fatalf("GETATTR with the handle taken before the kill: %s %v (ESTALE is NFS3ERR_STALE)", nfsclient.StatusName(status), err)
	} else if attr.Filesize != uint64(len(before)) {
		t.Errorf("GETATTR size %d, want %d", attr.Filesize, len(before))
	}

	// The NFSv4 client records the new server read are in RADOS, in the
	// store's namespace (its identity), not on either replica.
	ns := pv.Annotations[volume.AnnIdentity]
	out, err := exec.CommandContext(t.Context(), "rados", "-c", p.bed.ConfPath(), "-p", cephbed.GaneshaPool, "-N", ns, "ls").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "_recov") {
		t.Errorf("rados ls in namespace %q of pool %s: %q %v, want ganesha's recovery objects", ns, cephbed.GaneshaPool, out, err)
	} else {
		t.Logf("recovery database in RADOS namespace %s: %s", ns, strings.Join(strings.Fields(string(out)), " "))
	}
	framework.Eventually(t, 60*time.Second, "writes acknowledged after the takeover", func() (bool, error) { return w.count() >= ackedAtKill+10, nil })
	acked, failures, lastErr := w.finish()
	t.Logf("writer: %d acknowledged, %d attempts failed during the takeover (last: %v)", len(acked), failures, lastErr)
	checkAcked(t, p, pv, acked)
}

// volumeWith claims a volume of the pair and writes file "before" into it
// over NFSv3 through the Service.
func (p *pair) volumeWith(t *testing.T, before []byte) (*v1.PersistentVolume, nfsclient.Target) {
	t.Helper()
	pv := p.claim(t, "data")
	v3 := p.target(pv, serviceHost, 3)
	// A new CephFS volume's export may refuse MOUNT (MNT3ERR_ACCES) for a
	// few seconds after its claim is Bound on a loaded machine (seen in
	// the CephFS e2e tests too); the kubelet retries a failed mount.
	bound := time.Now()
	var refused error
	framework.Eventually(t, time.Minute, "the first write to the new volume", func() (bool, error) {
		err := nfsclient.WriteFile(t.Context(), v3, "before", before)
		if err != nil {
			refused = err
		}
		return err == nil, nil
	})
	if refused != nil {
		t.Logf("the new volume took writes %s after Bound (refused before: %v)", time.Since(bound).Round(time.Millisecond), refused)
	}
	return pv, v3
}

// TestFailoverFreeze: the active replica is frozen (SIGSTOP of all its
// processes) instead of killed. The passive fences it and serves; writes
// through the Service succeed. When the old active wakes (SIGCONT) it
// serves nothing: requests sent to its own address fail from the first
// moment, it exits, and what the new active holds is intact.
func TestFailoverFreeze(t *testing.T) {
	p := newPair(t)
	before := []byte("written before the freeze\n")
	pv, v3 := p.volumeWith(t, before)
	old := p.replicas[0]
	// Direct reads from the old active work while it serves.
	if _, err := nfsclient.ReadFile(t.Context(), p.target(pv, old.host, 3), "before"); err != nil {
		t.Fatalf("direct read from the active: %v", err)
	}

	frozen, err := framework.SignalTree(old.proc.PID(), syscall.SIGSTOP)
	t0 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			for _, pid := range frozen {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
	}
	defer thaw()
	t.Logf("froze the active replica's processes %v", frozen)

	tRead := untilRead(t, "read through the Service", 60*time.Second, p.viaNew(func() error {
		_, err := nfsclient.ReadFile(t.Context(), v3, "before")
		return err
	}))
	t.Logf("FIGURE takeover (SIGSTOP of the active to the first successful read through the Service): %s", tRead.Sub(t0).Round(time.Millisecond))
	after := []byte("written through the new active\n")
	if err := nfsclient.WriteFile(t.Context(), v3, "after", after); err != nil {
		t.Fatal(err)
	}

	// Wake the old active and ask it directly, at once and for a while.
	direct3, direct4 := p.target(pv, old.host, 3), p.target(pv, old.host, 4)
	thaw()
	tThaw := time.Now()
	var served []string
	for time.Since(tThaw) < 5*time.Second {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		if got, err := nfsclient.ReadFile(ctx, direct3, "before"); err == nil {
			served = append(served, fmt.Sprintf("v3 read at +%s: %q", time.Since(tThaw).Round(time.Millisecond), got))
		}
		if err := nfsclient.WriteFile(ctx, direct4, fmt.Sprintf("stale-%d", time.Now().UnixNano()), []byte("x")); err == nil {
			served = append(served, fmt.Sprintf("v4 write at +%s", time.Since(tThaw).Round(time.Millisecond)))
		}
		cancel()
	}
	if len(served) > 0 {
		t.Errorf("the old active served after it woke: %v", served)
	}
	select {
	case <-old.proc.Exited():
		t.Logf("the old active exited after waking: %v", old.proc.ExitErr())
	case <-time.After(10 * time.Second):
		t.Errorf("the old active still runs 15 s after waking")
	}
	if old.ready() {
		t.Error("the old active is ready")
	}

	// The new active still serves, and holds both writes.
	got, err := nfsclient.ReadFiles(t.Context(), v3, []string{"before", "after"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got["before"], before) || !bytes.Equal(got["after"], after) {
		t.Fatalf("after the old active woke: before=%q after=%q", got["before"], got["after"])
	}
	checkAcked(t, p, pv, map[string][]byte{"before": before, "after": after})
}

// TestFailoverFencesLiveServer: only the active's provisioner process is
// frozen; its ganesha lives on, reachable by the clients it had (an
// established connection survives the loss of the endpoint, as with
// kube-proxy) and at its own address. Nothing stops that ganesha but the
// fence: once the new active serves, the old ganesha must answer nothing
// with data, neither stale reads nor writes, and a write sent to it must
// not reach CephFS.
func TestFailoverFencesLiveServer(t *testing.T) {
	p := newPair(t)
	before := []byte("written before the freeze\n")
	pv, v3 := p.volumeWith(t, before)
	old := p.replicas[0]
	direct := p.target(pv, old.host, 3)
	// Warm the old ganesha's caches, and keep a connection through the
	// Service to it, as a client of the old active would have.
	if got, err := nfsclient.ReadFile(t.Context(), direct, "before"); err != nil || !bytes.Equal(got, before) {
		t.Fatalf("direct read from the active: %q %v", got, err)
	}
	held, err := nfsclient.DialRaw(t.Context(), v3)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	status, fh, err := held.Lookup(held.Root, "before")
	if err != nil || status != 0 {
		t.Fatalf("LOOKUP: %s %v", nfsclient.StatusName(status), err)
	}

	if err := syscall.Kill(old.proc.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	defer syscall.Kill(old.proc.PID(), syscall.SIGCONT)
	tRead := untilRead(t, "read through the Service", 60*time.Second, p.viaNew(func() error {
		_, err := nfsclient.ReadFile(t.Context(), v3, "before")
		return err
	}))
	t.Logf("FIGURE takeover (SIGSTOP of the active's provisioner, its ganesha alive, to the first successful read through the Service): %s",
		tRead.Sub(t0).Round(time.Millisecond))
	if p.svc.Current() == nil || p.svc.Current().Host != p.replicas[1].host {
		t.Fatalf("the Service does not point at the new active: %+v", p.svc.Current())
	}
	changed := []byte("changed by the new active, longer than before\n")
	if err := nfsclient.WriteFile(t.Context(), v3, "before", changed); err != nil {
		t.Fatal(err)
	}

	// The old ganesha, alive: whatever it answers must not be data.
	var served []string
	if status, attr, err := held.GetAttr(fh); err == nil && status == 0 {
		served = append(served, fmt.Sprintf("GETATTR on the held connection: size %d", attr.Filesize))
	} else {
		t.Logf("GETATTR on the held connection to the old ganesha: %s %v", nfsclient.StatusName(status), err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	if got, err := nfsclient.ReadFile(ctx, direct, "before"); err == nil {
		served = append(served, fmt.Sprintf("READ at its address: %q", got))
	} else {
		t.Logf("READ at the old ganesha's address: %v", err)
	}
	if err := nfsclient.WriteFile(ctx, direct, "split-brain", []byte("must not land\n")); err == nil {
		served = append(served, "WRITE at its address acknowledged")
	} else {
		t.Logf("WRITE at the old ganesha's address: %v", err)
	}
	cancel()
	if len(served) > 0 {
		t.Errorf("the fenced ganesha still served: %v", served)
	}
	mnt := p.bed.MountFuse(t, "/", cephbed.Client{})
	dir := filepath.Join(mnt, p.subvolumePath(t, pv))
	if _, err := os.Stat(filepath.Join(dir, "split-brain")); err == nil {
		t.Error("a write sent to the fenced ganesha is in CephFS")
	}
	if got, err := os.ReadFile(filepath.Join(dir, "before")); err != nil || !bytes.Equal(got, changed) {
		t.Errorf("in CephFS: %q %v, want the new active's %q", got, err, changed)
	}

	// Woken, the old provisioner exits, and its ganesha with it.
	_ = syscall.Kill(old.proc.PID(), syscall.SIGCONT)
	select {
	case <-old.proc.Exited():
		t.Logf("the old active exited after waking: %v", old.proc.ExitErr())
	case <-time.After(15 * time.Second):
		t.Errorf("the old active still runs 15 s after waking")
	}
}

// TestFailoverCleanHandover: SIGTERM to the active (a rolling update). It
// stops serving first and releases the Lease after, so the passive takes
// over without waiting for the Lease to expire, and the old one exits 0.
// A SIGTERM to a passive replica stops it at once.
func TestFailoverCleanHandover(t *testing.T) {
	p := newPair(t)
	before := []byte("written before the handover\n")
	pv, v3 := p.volumeWith(t, before)
	old := p.replicas[0]
	t0 := time.Now()
	if err := syscall.Kill(old.proc.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	tRead := untilRead(t, "read through the Service", 60*time.Second, p.viaNew(func() error {
		got, err := nfsclient.ReadFile(t.Context(), v3, "before")
		if err == nil && !bytes.Equal(got, before) {
			t.Fatalf("read %q, want %q", got, before)
		}
		return err
	}))
	t.Logf("FIGURE handover (SIGTERM of the active to the first successful read through the Service): %s", tRead.Sub(t0).Round(time.Millisecond))
	select {
	case <-old.proc.Exited():
		if err := old.proc.ExitErr(); err != nil {
			t.Errorf("the old active exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the old active still runs 30 s after SIGTERM")
	}
	// A new passive beside the new active; SIGTERM stops it promptly.
	r := &replica{name: "r2", host: old.host, exportDir: old.exportDir + "-2", httpPort: old.httpPort, spec: old.spec}
	spec := *old.spec
	spec.ExportDir, spec.LogFile = r.exportDir, old.spec.LogFile+"-2"
	r.spec = &spec
	p.start(t, r)
	framework.Eventually(t, time.Minute, "the new replica waiting for the Lease", func() (bool, error) {
		data, err := os.ReadFile(r.spec.LogFile)
		return bytes.Contains(data, []byte("Passive: waiting for the Lease")), err
	})
	if r.ready() {
		t.Fatal("a second passive replica is ready while the active serves")
	}
	t1 := time.Now()
	if err := syscall.Kill(r.proc.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.proc.Exited():
		t.Logf("a passive replica stopped %s after SIGTERM", time.Since(t1).Round(time.Millisecond))
		if err := r.proc.ExitErr(); err != nil {
			t.Errorf("a passive replica exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a passive replica still runs 10 s after SIGTERM")
	}
	got, err := nfsclient.ReadFile(t.Context(), v3, "before")
	if err != nil || !bytes.Equal(got, before) {
		t.Fatalf("the new active after the passive's stop: %q %v", got, err)
	}
	_ = pv
}
