package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// Issue 13: export IDs. The ID a PV records is the one ganesha serves; IDs
// are not reused right after a restart; -max-exports holds under
// concurrency; with -run-server=false only our own exports are touched.

// sharedGanesha is a ganesha run outside the provisioner (as
// -run-server=false expects) that also serves exports of someone else,
// managed from a state directory of their own.
type sharedGanesha struct {
	srv                *ganesha.Server
	nfsPort, mountPort int
	foreign            []ganesha.Export
}

// startSharedGanesha starts ganesha on exportDir's state directory.
func startSharedGanesha(t *testing.T, exportDir string) *sharedGanesha {
	t.Helper()
	ports, err := framework.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(exportDir, volume.StateDirName, "ganesha")
	srv, err := ganesha.NewServer(ganesha.Config{StateDir: stateDir, BindAddress: "127.0.0.1", NFSPort: ports[0], MountdPort: ports[1], NFSv3: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop ganesha: %v", err)
		}
	})
	return &sharedGanesha{srv: srv, nfsPort: ports[0], mountPort: ports[1]}
}

// addForeign adds n exports of someone else with IDs 1..n.
func (g *sharedGanesha) addForeign(t *testing.T, n int) {
	t.Helper()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	g.addForeignIDs(t, ids...)
}

// other is a manager of the shared ganesha with a state directory of its
// own: another tool that manages exports there.
func (g *sharedGanesha) other(t *testing.T) *ganesha.ExportManager {
	t.Helper()
	m, err := ganesha.ConnectExportManager(g.srv.BusAddress(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// addForeignIDs adds exports of someone else under the given IDs, each
// holding a file "owner" that names its position in g.foreign.
func (g *sharedGanesha) addForeignIDs(t *testing.T, ids ...int) {
	t.Helper()
	other := g.other(t)
	data := t.TempDir()
	for _, id := range ids {
		i := len(g.foreign) + 1
		dir := filepath.Join(data, fmt.Sprintf("foreign-%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(fmt.Sprintf("someone else %d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		e := ganesha.Export{ID: uint16(id), Path: dir, Pseudo: fmt.Sprintf("/foreign-%d", i), Access: ganesha.AccessRW, Squash: ganesha.NoRootSquash}
		if err := other.Add(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		g.foreign = append(g.foreign, e)
	}
}

// checkForeign fails unless every foreign export is still served with its
// file.
func (g *sharedGanesha) checkForeign(t *testing.T, when string) {
	t.Helper()
	for i, e := range g.foreign {
		target := nfsclient.Target{Host: "127.0.0.1", NFSPort: g.nfsPort, MountPort: g.mountPort, Pseudo: e.Pseudo, Version: 3}
		got, err := readWithin(t.Context(), target, "owner")
		if want := fmt.Sprintf("someone else %d", i+1); err != nil || string(got) != want {
			t.Errorf("%s: foreign export %d (%s): read %q, %v", when, e.ID, e.Pseudo, got, err)
		}
	}
}

func startOnShared(t *testing.T, g *sharedGanesha, c *framework.Cluster, ns, exportDir string) *testProvisioner {
	t.Helper()
	p := startProvisioner(t, c, provisionerConfig{
		Namespace: ns, ExportDir: exportDir,
		ExtraArgs: append([]string{"-run-server=false"}, fastReconcile...),
		Env:       map[string]string{"DBUS_SYSTEM_BUS_ADDRESS": g.srv.BusAddress()},
	})
	p.NFSPort, p.MountPort = g.nfsPort, g.mountPort
	return p
}

// servedID is the ID under which ganesha serves pv's path.
func servedID(t *testing.T, p *testProvisioner, pv *v1.PersistentVolume) string {
	t.Helper()
	id, _, _, ok := exportOf(t, p, pv)
	if !ok {
		t.Fatalf("ganesha does not serve PV %s (%s)", pv.Name, pv.Spec.NFS.Path)
	}
	return strconv.Itoa(int(id))
}

// TestRunServerFalseTouchesOnlyOwnExports: with -run-server=false, exports
// of the shared ganesha that are not ours survive start-up, periodic
// reconciliation, provisioning, deletion and a restart.
func TestRunServerFalseTouchesOnlyOwnExports(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	exportDir := shortTempDir(t)
	g := startSharedGanesha(t, exportDir)
	g.addForeign(t, 3)
	g.checkForeign(t, "before the provisioner starts")
	if t.Failed() {
		t.FailNow()
	}
	p := startOnShared(t, g, c, ns, exportDir)
	g.checkForeign(t, "after start-up")
	class := ns + "-shared"
	storageClass(t, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	env := testEnv{c: c, ns: ns, p: p, class: class}
	pv, content := boundWithData(t, env, class, "ours")
	time.Sleep(settle)
	g.checkForeign(t, "after provisioning and reconciliation")
	served(t, p, pv, "data", content)
	p.stop()
	p.restart()
	g.checkForeign(t, "after a restart")
	deleteClaim(t, c, ns, "ours")
	waitPVGone(t, c, pv.Name)
	time.Sleep(settle)
	g.checkForeign(t, "after a delete")
	if n := len(p.exports(t.Context())); n != len(g.foreign) {
		t.Errorf("ganesha serves %d exports, want the %d foreign ones", n, len(g.foreign))
	}
}

// TestExportIDConflictPVRecordsServedID: when the ID the provisioner would
// use is taken in ganesha by someone else, the volume is exported under
// another ID, and that one (the ID ganesha serves) is what the PV records;
// deleting the claim removes our export and not the other owner's.
func TestExportIDConflictPVRecordsServedID(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	exportDir := shortTempDir(t)
	g := startSharedGanesha(t, exportDir)
	p := startOnShared(t, g, c, ns, exportDir)
	// Taken after start-up, so that the provisioner meets them only as
	// conflicts when it exports.
	g.addForeign(t, 8)
	g.checkForeign(t, "before provisioning")
	class := ns + "-conflict"
	storageClass(t, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	env := testEnv{c: c, ns: ns, p: p, class: class}
	var pvs []*v1.PersistentVolume
	for i := range 3 {
		pv, content := boundWithData(t, env, class, fmt.Sprintf("c%d", i))
		if got, want := servedID(t, p, pv), pv.Annotations[volume.AnnExportID]; got != want {
			t.Errorf("PV %s records export ID %s, ganesha serves it as %s", pv.Name, want, got)
		}
		served(t, p, pv, "data", content)
		pvs = append(pvs, pv)
	}
	for i, pv := range pvs {
		deleteClaim(t, c, ns, fmt.Sprintf("c%d", i))
		waitPVGone(t, c, pv.Name)
	}
	time.Sleep(settle)
	g.checkForeign(t, "after our volumes were deleted")
}

// TestExportIDsNotReusedAfterRestart: the ID of a deleted volume is not
// handed to the next volume after a restart (a client still holding the
// old file handles must not land in someone else's volume).
func TestExportIDsNotReusedAfterRestart(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	seen := map[string]string{}
	var last int
	for round := range 3 {
		name := fmt.Sprintf("round-%d", round)
		createClaim(t, c, framework.Claim(ns, name, env.class, "1Mi"))
		pv := waitBound(t, c, ns, name)
		id := pv.Annotations[volume.AnnExportID]
		if prev, ok := seen[id]; ok {
			t.Errorf("round %d: export ID %s of deleted PV %s reused for %s", round, id, prev, pv.Name)
		}
		n, _ := strconv.Atoi(id)
		if n <= last {
			t.Errorf("round %d: export ID %d is not above the highest used so far (%d)", round, n, last)
		}
		last = max(last, n)
		seen[id] = pv.Name
		deleteClaim(t, c, ns, name)
		waitPVGone(t, c, pv.Name)
		p.stop()
		p.restart()
	}
}

// TestMaxExportsUnderConcurrency: with -max-exports=2, sixteen claims made at
// once give exactly two Bound volumes; the others get Warning events and
// leave no directory and no export behind.
func TestMaxExportsUnderConcurrency(t *testing.T) {
	env := newTestEnv(t, append(fastReconcile, "-max-exports=2")...)
	c, ns, p := env.c, env.ns, env.p
	const n = 16
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), framework.Claim(ns, fmt.Sprintf("race-%d", i), env.class, "1Mi"), metav1.CreateOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	var bound, refused []string
	framework.Eventually(t, 90*time.Second, "every claim Bound or refused", func() (bool, error) {
		bound, refused = nil, nil
		for i := range n {
			name := fmt.Sprintf("race-%d", i)
			pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if pvc.Status.Phase == v1.ClaimBound {
				bound = append(bound, name)
				continue
			}
			events, err := c.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
			if err != nil {
				return false, err
			}
			for _, e := range events.Items {
				if e.Type == v1.EventTypeWarning && containsAny(e.Message, "-max-exports", "limit") {
					refused = append(refused, name)
					break
				}
			}
		}
		return len(bound)+len(refused) == n, nil
	})
	time.Sleep(settle)
	pvs, err := c.Client.CoreV1().PersistentVolumes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bound %v; refused %v", bound, refused)
	if len(bound) != 2 || countOf(pvs.Items, p.cfg.Name) != 2 {
		t.Errorf("%d claims Bound and %d PVs with -max-exports=2", len(bound), countOf(pvs.Items, p.cfg.Name))
	}
	if dirs := p.volumeDirs(); len(dirs) != 2 {
		t.Errorf("store holds %d volumes %v, want 2", len(dirs), dirs)
	}
	if exports := p.exports(t.Context()); len(exports) != 2 {
		t.Errorf("ganesha serves %d exports, want 2", len(exports))
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestForeignExportUnderOurIDIsNotOurs: with -run-server=false, while the
// provisioner is down another tool of the shared ganesha withdraws one of
// our exports and serves its own directory under that ID. After start-up
// the PV is served again with its own data under the ID its PV records,
// and the other tool's export is left alone: an export is ours by what
// ganesha serves, not by its ID or by a file we wrote once.
func TestForeignExportUnderOurIDIsNotOurs(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	exportDir := shortTempDir(t)
	g := startSharedGanesha(t, exportDir)
	p := startOnShared(t, g, c, ns, exportDir)
	class := ns + "-stolen"
	storageClass(t, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	env := testEnv{c: c, ns: ns, p: p, class: class}
	pv, content := boundWithData(t, env, class, "ours")
	id, _ := strconv.Atoi(pv.Annotations[volume.AnnExportID])

	p.stop()
	if err := g.other(t).Remove(t.Context(), uint16(id)); err != nil {
		t.Fatal(err)
	}
	g.addForeignIDs(t, id)
	g.checkForeign(t, "before the provisioner starts again")
	p.restart()
	time.Sleep(settle)
	pv = getPV(t, c, pv.Name)
	served(t, p, pv, "data", content)
	if got, want := servedID(t, p, pv), pv.Annotations[volume.AnnExportID]; got != want {
		t.Errorf("PV %s records export ID %s, ganesha serves it as %s", pv.Name, want, got)
	}
	g.checkForeign(t, "after start-up and reconciliation")
}
