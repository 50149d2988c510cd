package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// Issue 13: the data plane outlives the control plane, and a full store
// refuses new claims but keeps serving.

// apiFreeze is how long the API server is frozen: longer than any lease
// duration or client timeout, as in the audit's reproduction (44 of 44
// reads failed on main).
const apiFreeze = 45 * time.Second

// TestAPIServerFreezeKeepsNFSServing: with leader election on and off, an
// API server frozen (SIGSTOP) for 45 s costs not one NFS read of a read
// every second; afterwards provisioning resumes on its own in the same
// process, and SIGTERM still stops ganesha gracefully.
func TestAPIServerFreezeKeepsNFSServing(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	type side struct {
		name  string
		p     *testProvisioner
		class string
		pv    *v1.PersistentVolume
		probe *nfsProbe
		pid   int
	}
	var sides []*side
	// Both modes share one freeze: it is the expensive part.
	for _, le := range []bool{true, false} {
		s := &side{name: fmt.Sprintf("leader-elect=%v", le)}
		s.p = startProvisioner(t, c, provisionerConfig{
			Namespace: ns, Name: fmt.Sprintf("example.com/nfs-le-%v-%s", le, ns),
			ExtraArgs: append([]string{fmt.Sprintf("-leader-elect=%v", le)}, fastReconcile...),
		})
		s.class = fmt.Sprintf("%s-le-%v", ns, le)
		storageClass(t, c, s.class, s.p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
		env := testEnv{c: c, ns: ns, p: s.p, class: s.class}
		var content string
		s.pv, content = boundWithData(t, env, s.class, fmt.Sprintf("before-%v", le))
		s.probe = startProbe(t, s.p, s.pv, "data", content)
		s.pid = s.p.proc.PID()
		sides = append(sides, s)
	}
	time.Sleep(2 * time.Second)
	thaw := c.FreezeAPIServer(t)
	frozenAt := time.Now()
	time.Sleep(apiFreeze)
	thaw()
	t.Logf("API server frozen for %v", time.Since(frozenAt).Round(time.Second))
	time.Sleep(3 * time.Second)

	for _, s := range sides {
		reads, misses, errs := s.probe.result()
		t.Logf("%s: %d NFS reads, %d missed", s.name, reads, misses)
		if misses > 0 {
			t.Errorf("%s: %d of %d NFS reads failed around the API freeze: %s", s.name, misses, reads, strings.Join(errs, "; "))
		}
		select {
		case <-s.p.proc.Exited():
			t.Errorf("%s: the provisioner exited during the API freeze: %v", s.name, s.p.proc.ExitErr())
		default:
		}
	}
	for i, s := range sides {
		name := fmt.Sprintf("after-%d", i)
		createClaim(t, c, framework.Claim(ns, name, s.class, "1Mi"))
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		pv, err := framework.WaitBound(ctx, c.Client, ns, name)
		cancel()
		if err != nil {
			t.Errorf("%s: provisioning did not resume after the freeze: %v", s.name, err)
			continue
		}
		nfsWrite(t, s.p, pv, "x", []byte("x"), 3)
		if s.p.proc.PID() != s.pid {
			t.Errorf("%s: the provisioner was restarted", s.name)
		}
	}
	for _, s := range sides {
		s.p.stop()
		if err := s.p.proc.ExitErr(); err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", s.name, err)
		}
		if !strings.Contains(s.p.log(), "NFS server stopped") {
			t.Errorf("%s: ganesha was not stopped gracefully:\n%s", s.name, s.p.proc.Tail(20))
		}
	}
}

// TestFullStoreRefusesClaimsKeepsServing: on a small ext4 store filled
// through NFS, writes fail with an NFS error (not a hang), new claims get
// Warning events and leave nothing behind, existing volumes keep serving
// reads, and no log of ganesha or the provisioner grows on the exported
// filesystem.
func TestFullStoreRefusesClaimsKeepsServing(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	store := framework.NewLoopStore(t, 32<<20, "ext4")
	// A fresh ext4's lost+found is TestFreshExt4StoreStarts' concern.
	if err := os.Remove(filepath.Join(store.Dir, "lost+found")); err != nil {
		t.Fatal(err)
	}
	p := startProvisioner(t, c, provisionerConfig{Namespace: ns, ExportDir: store.Dir, ExtraArgs: fastReconcile})
	class := ns + "-class"
	storageClass(t, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	env := testEnv{c: c, ns: ns, p: p, class: class}
	pv, content := boundWithData(t, env, class, "filled")
	logs := logSizes(t, store.Dir)

	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	filled := false
	for i := range 64 {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		err := writeWithin(ctx, p.target(pv, 3), fmt.Sprintf("fill-%d", i), chunk)
		cancel()
		if err != nil {
			if strings.Contains(err.Error(), "no answer") {
				t.Fatalf("a write to the full store hung: %v", err)
			}
			t.Logf("write %d MiB into a 32 MiB store failed cleanly: %v", i+1, err)
			filled = true
			break
		}
	}
	if !filled {
		t.Fatalf("64 MiB written into a 32 MiB store")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	if err := writeWithin(ctx, p.target(pv, 3), "one-more", chunk); err == nil || strings.Contains(err.Error(), "no answer") {
		t.Errorf("a second write to the full store: %v, want an NFS error", err)
	}
	cancel()

	createClaim(t, c, framework.Claim(ns, "refused", class, "1Mi"))
	t.Logf("event: %s", warningEvent(t, c, ns, "refused", ""))
	time.Sleep(settle)
	if dirs := p.volumeDirs(); len(dirs) != 1 {
		t.Errorf("store holds %v, want only %s", dirs, pv.Annotations[volume.AnnDirectory])
	}
	if n := len(p.exports(t.Context())); n != 1 {
		t.Errorf("ganesha serves %d exports, want 1", n)
	}
	served(t, p, pv, "data", content)
	for path, size := range logSizes(t, store.Dir) {
		if size > logs[path] {
			t.Errorf("log %s on the exported filesystem grew from %d to %d bytes", path, logs[path], size)
		}
	}
}

// logSizes lists the files on the store outside its volumes that look like
// logs, with their sizes.
func logSizes(t testing.TB, store string) map[string]int64 {
	t.Helper()
	sizes := map[string]int64{}
	root := filepath.Join(store, volume.StateDirName)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		name := strings.ToLower(d.Name())
		if strings.Contains(name, "log") || strings.HasSuffix(name, ".out") || strings.HasSuffix(name, ".err") {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			sizes[path] = fi.Size()
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return sizes
}

// TestFreshExt4StoreStarts: a freshly made ext4 filesystem, the obvious way
// to give the store a filesystem of its own, holds lost+found. It is not a
// volume: the provisioner starts on it, keeps running, provisions, and
// leaves lost+found alone, across a restart too.
func TestFreshExt4StoreStarts(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	store := framework.NewLoopStore(t, 32<<20, "ext4")
	p := startProvisioner(t, c, provisionerConfig{Namespace: ns, ExportDir: store.Dir, ExtraArgs: fastReconcile})
	class := ns + "-class"
	storageClass(t, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	env := testEnv{c: c, ns: ns, p: p, class: class}
	for round := range 2 {
		if round == 1 {
			p.stop()
			p.restart()
		}
		time.Sleep(settle)
		select {
		case <-p.proc.Exited():
			t.Fatalf("round %d: the provisioner exited on a fresh ext4 store: %v\n%s", round, p.proc.ExitErr(), lineWith(p.log(), "failed"))
		default:
		}
		name := fmt.Sprintf("round-%d", round)
		pv, content := boundWithData(t, env, class, name)
		served(t, p, pv, "data", content)
		if fi, err := os.Stat(filepath.Join(store.Dir, "lost+found")); err != nil || !fi.IsDir() {
			t.Errorf("round %d: lost+found: %v", round, err)
		}
	}
}
