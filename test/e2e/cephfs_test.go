package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// cephTestEnv is a provisioner with CephFS volumes on the package's Ceph
// test bed, working as a cephx user with exactly the caps docs/volume-kinds.md
// lists (not as admin), in a subvolume group of its own.
type cephTestEnv struct {
	testEnv
	bed   *cephbed.Cluster
	group string
	user  cephbed.Client
}

// provisionerCaps are the caps docs/volume-kinds.md documents for the
// provisioner's own cephx user, for a subvolume group: mgr volumes commands
// on that group only, and the auth commands on identities named after it.
func provisionerCaps(fs, group string) []string {
	var mgr []string
	for _, cmd := range []string{"fs subvolume create", "fs subvolume info", "fs subvolume rm", "fs subvolume resize",
		"fs subvolume snapshot create", "fs subvolume snapshot rm", "fs subvolume snapshot ls", "fs subvolume snapshot clone",
		"fs clone status", "fs clone cancel", "fs subvolume ls", "fs subvolumegroup create",
		"fs subvolume metadata set", "fs subvolume metadata get"} {
		mgr = append(mgr, fmt.Sprintf("allow command %q with vol_name=%s group_name=%s", cmd, fs, group))
	}
	var mon []string
	mon = append(mon, "allow r")
	for _, cmd := range []string{"auth get-or-create", "auth get", "auth del"} {
		mon = append(mon, fmt.Sprintf("allow command %q with entity prefix client.%s.", cmd, group))
	}
	return []string{"mon", strings.Join(mon, ", "), "mgr", strings.Join(mgr, ", ")}
}

func newCephTestEnv(t *testing.T, extraArgs ...string) cephTestEnv {
	t.Helper()
	return newCephTestEnvOn(t, cephbed.Shared(t), extraArgs...)
}

// newCephTestEnvOn is newCephTestEnv on a cluster of the test's own.
func newCephTestEnvOn(t *testing.T, bed *cephbed.Cluster, extraArgs ...string) cephTestEnv {
	t.Helper()
	c := framework.Shared(t)
	ns := c.Namespace(t)
	group := "nfsp-" + ns
	dir := shortTempDir(t)
	user := cephbed.Client{Name: group, Keyring: filepath.Join(dir, "provisioner.keyring")}
	keyring, err := bed.Ceph(t.Context(), append([]string{"auth", "get-or-create", "client." + user.Name}, provisionerCaps(cephbed.FSName, group)...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(user.Keyring, keyring, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = bed.Ceph(context.Background(), "auth", "del", "client."+user.Name) })
	args := append([]string{"-ceph-conf=" + bed.ConfPath(), "-ceph-keyring=" + user.Keyring, "-ceph-user=" + user.Name,
		"-ceph-subvolume-group=" + group, "-v=2"}, extraArgs...)
	// ganesha names its CephFS sessions after its host name and the export
	// ID, and a stopped ganesha leaves them to be reclaimed: the MDS turns
	// away a second session of the same name. Every provisioner of these
	// tests runs on this one host, so each gets a host name of its own, as
	// each pod of a cluster has.
	wrap := []string{"unshare", "--uts", "sh", "-c", `hostname "$0" && exec "$@"`, "nfsp-" + ns}
	p := startProvisioner(t, c, provisionerConfig{Namespace: ns, ExtraArgs: args, Wrap: wrap})
	return cephTestEnv{testEnv: testEnv{c: c, ns: ns, p: p}, bed: bed, group: group, user: user}
}

// subvolumes lists the subvolumes of the env's group, archives included.
func (e cephTestEnv) subvolumes(t testing.TB) []string {
	t.Helper()
	var list []struct {
		Name string `json:"name"`
	}
	if err := e.bed.CephJSON(t.Context(), &list, "fs", "subvolume", "ls", cephbed.FSName, "--group_name", e.group); err != nil {
		if strings.Contains(err.Error(), "ENOENT") {
			return nil
		}
		t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	return names
}

// subvolumePath is where volume name is in the CephFS.
func (e cephTestEnv) subvolumePath(t testing.TB, name string) string {
	t.Helper()
	out, err := e.bed.Ceph(t.Context(), "fs", "subvolume", "getpath", cephbed.FSName, name, "--group_name", e.group)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// identity returns the key of volume name's cephx identity, "" when there
// is none.
func (e cephTestEnv) identity(t testing.TB, name string) (key string, caps map[string]string) {
	t.Helper()
	var list []struct {
		Key  string            `json:"key"`
		Caps map[string]string `json:"caps"`
	}
	err := e.bed.CephJSON(t.Context(), &list, "auth", "get", "client."+e.group+"."+name)
	if err != nil {
		if strings.Contains(err.Error(), "ENOENT") || strings.Contains(err.Error(), "failed to find") {
			return "", nil
		}
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("auth get %s: %d entries", name, len(list))
	}
	return list[0].Key, list[0].Caps
}

// cephClaim creates a claim and, when the test ends, deletes it (while the
// provisioner still runs: a ganesha stopped with CephFS exports leaves its
// sessions to be reclaimed, and an MDS restarted soon after waits for them).
func (e cephTestEnv) cephClaim(t testing.TB, pvc *v1.PersistentVolumeClaim) {
	t.Helper()
	createClaim(t, e.c, pvc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = e.c.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Delete(ctx, pvc.Name, metav1.DeleteOptions{})
		for ctx.Err() == nil {
			got, err := e.c.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Get(ctx, pvc.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if err == nil && got.Spec.VolumeName != "" {
				if _, err := e.c.Client.CoreV1().PersistentVolumes().Get(ctx, got.Spec.VolumeName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
					break
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

func cephClass(t testing.TB, e cephTestEnv, name string, extra map[string]string) string {
	t.Helper()
	params := map[string]string{"fsType": "cephfs", "uid": "999", "gid": "999", "mode": "0770"}
	for k, v := range extra {
		params[k] = v
	}
	expandableClass(t, e.c, name, e.p.cfg.Name, params)
	return name
}

// writeUntilRefused writes chunk-sized files over NFSv3 until a write fails
// or limit bytes went through; it returns the bytes written and the error.
func writeUntilRefused(t testing.TB, target nfsclient.Target, prefix string, chunk []byte, limit int) (int, error) {
	t.Helper()
	written := 0
	for i := 0; written < limit; i++ {
		if err := nfsclient.WriteFile(t.Context(), target, fmt.Sprintf("%s-%d", prefix, i), chunk); err != nil {
			return written, err
		}
		written += len(chunk)
	}
	return written, nil
}

// TestCephFSLifecycle: the lifecycle of issue 15 on a real Ceph cluster.
// A claim is Bound to a subvolume with a quota and an identity confined to
// it; an NFS write lands in CephFS; writing past the quota fails; expanding
// the claim lets the same write through; a clone carries the data and is a
// volume of its own; deleting the claims removes the subvolumes and their
// cephx identities. The provisioner works as a cephx user with the caps the
// docs list, not as admin.
func TestCephFSLifecycle(t *testing.T) {
	e := newCephTestEnv(t)
	c, ns, p := e.c, e.ns, e.p
	class := cephClass(t, e, ns+"-ceph", nil)
	mnt := e.bed.MountFuse(t, "/", cephbed.Client{})

	start := time.Now()
	createClaim(t, c, framework.Claim(ns, "data", class, "16Mi"))
	pv := waitBound(t, c, ns, "data")
	t.Logf("FIGURE CephFS claim to Bound: %s", time.Since(start).Round(time.Millisecond))
	name := pv.Annotations[volume.AnnDirectory]
	if pv.Annotations[volume.AnnKind] != "cephfs" {
		t.Fatalf("PV kind %q", pv.Annotations[volume.AnnKind])
	}
	path := e.subvolumePath(t, name)
	key, caps := e.identity(t, name)
	if key == "" || caps["mds"] != "allow rw path="+path || caps["osd"] != "allow rw tag cephfs data="+cephbed.FSName || caps["mon"] != "allow r" || len(caps) != 3 {
		t.Fatalf("identity of %s: caps %v (path %s)", name, caps, path)
	}

	// An NFS write lands in CephFS.
	target := p.target(pv, 3)
	target.UID, target.GID = 999, 999
	small := []byte("written over NFS, read through CephFS\n")
	nfsWriteAs(t, target, "hello", small)
	if got, err := os.ReadFile(filepath.Join(mnt, path, "hello")); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("the NFS write in CephFS: %q %v", got, err)
	}
	v4 := p.target(pv, 4)
	v4.UID, v4.GID = 999, 999
	if got, err := nfsclient.ReadFile(t.Context(), v4, "hello"); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("NFSv4 read: %q %v", got, err)
	}
	if st := fsstat(t, target); st.TotalBytes != 16<<20 {
		t.Errorf("FSSTAT total %d, want the quota %d", st.TotalBytes, 16<<20)
	}

	// Past the quota, writes fail.
	chunk := bytes.Repeat([]byte("q"), 1<<20)
	written, err := writeUntilRefused(t, target, "fill", chunk, 64<<20)
	t.Logf("FIGURE CephFS quota 16 MiB: %d MiB written in 1 MiB files before a write failed: %v", written>>20, err)
	if err == nil {
		t.Fatalf("%d MiB written into a 16 MiB volume without an error", written>>20)
	}
	if written > 24<<20 || written < 8<<20 {
		t.Fatalf("the quota let %d MiB through, want about 16", written>>20)
	}
	failed := fmt.Sprintf("fill-%d", written>>20)

	// Expansion lets it through.
	took, pv := expandClaim(t, c, ns, "data", "48Mi")
	t.Logf("FIGURE CephFS expansion 16Mi -> 48Mi: claim edit to status capacity %s", took.Round(time.Millisecond))
	nfsWriteAs(t, target, failed, chunk)
	if st := fsstat(t, target); st.TotalBytes != 48<<20 {
		t.Errorf("FSSTAT total %d after expansion, want %d", st.TotalBytes, 48<<20)
	}

	// A clone carries the data and is a volume of its own.
	clone := framework.Claim(ns, "copy", class, "64Mi")
	clone.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "data"}
	start = time.Now()
	createClaim(t, c, clone)
	clonePV := waitBound(t, c, ns, "copy")
	t.Logf("FIGURE CephFS clone of %d MiB to Bound: %s", (written+len(chunk))>>20, time.Since(start).Round(time.Millisecond))
	cloneName := clonePV.Annotations[volume.AnnDirectory]
	cloneTarget := p.target(clonePV, 3)
	cloneTarget.UID, cloneTarget.GID = 999, 999
	for _, f := range []string{"hello", failed} {
		want, _ := nfsclient.ReadFile(t.Context(), target, f)
		if got, err := nfsclient.ReadFile(t.Context(), cloneTarget, f); err != nil || !bytes.Equal(got, want) || len(want) == 0 {
			t.Fatalf("clone's %s: %d bytes, %v; source has %d", f, len(got), err, len(want))
		}
	}
	nfsWriteAs(t, cloneTarget, "only-in-clone", []byte("x"))
	if _, err := nfsclient.ReadFile(t.Context(), target, "only-in-clone"); err == nil {
		t.Fatal("a write to the clone shows in its source")
	}
	if st := fsstat(t, cloneTarget); st.TotalBytes != 64<<20 {
		t.Errorf("clone FSSTAT total %d, want %d", st.TotalBytes, 64<<20)
	}
	if snaps, err := e.bed.Ceph(t.Context(), "fs", "subvolume", "snapshot", "ls", cephbed.FSName, name, "--group_name", e.group); err != nil || strings.Contains(string(snaps), "name") {
		t.Errorf("snapshots left on the clone's source: %s %v", snaps, err)
	}

	// The key is in root-only export files and nowhere in the log.
	exports, _ := filepath.Glob(filepath.Join(p.cfg.ExportDir, volume.StateDirName, "ganesha", "exports", "*.conf"))
	if len(exports) != 2 {
		t.Fatalf("export files %v", exports)
	}
	for _, f := range exports {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("export file %s: %v %v", f, fi.Mode(), err)
		}
	}
	if strings.Contains(p.log(), key) {
		t.Error("the provisioner's log holds a volume's cephx key")
	}

	// Delete removes the subvolumes and their identities.
	for _, cl := range []struct{ claim, name, pv string }{{"copy", cloneName, clonePV.Name}, {"data", name, pv.Name}} {
		deleteClaim(t, c, ns, cl.claim)
		waitPVGone(t, c, cl.pv)
		for _, s := range e.subvolumes(t) {
			if s == cl.name {
				t.Fatalf("subvolume %s still there after its claim was deleted", s)
			}
		}
		if key, _ := e.identity(t, cl.name); key != "" {
			t.Fatalf("cephx identity of %s still there after its claim was deleted", cl.name)
		}
	}
	nfsRefused(t, p, pv)
	if left := e.subvolumes(t); len(left) != 0 {
		t.Fatalf("subvolumes left: %v", left)
	}
}

func nfsWriteAs(t testing.TB, target nfsclient.Target, name string, data []byte) {
	t.Helper()
	if err := nfsclient.WriteFile(t.Context(), target, name, data); err != nil {
		t.Fatalf("NFSv%d write %s to %s: %v", target.Version, name, target.Pseudo, err)
	}
}

// TestCephFSOnDelete: retain keeps the subvolume (and its identity, for a
// PV restored later); archive keeps the data under a new name and removes
// the volume and its identity.
func TestCephFSOnDelete(t *testing.T) {
	e := newCephTestEnv(t)
	c, ns, p := e.c, e.ns, e.p
	mnt := e.bed.MountFuse(t, "/", cephbed.Client{})
	for _, mode := range []string{"retain", "archive"} {
		class := cephClass(t, e, ns+"-"+mode, map[string]string{"onDelete": mode})
		createClaim(t, c, framework.Claim(ns, mode, class, "8Mi"))
		pv := waitBound(t, c, ns, mode)
		name := pv.Annotations[volume.AnnDirectory]
		target := p.target(pv, 3)
		target.UID, target.GID = 999, 999
		nfsWriteAs(t, target, "kept", []byte(mode))
		deleteClaim(t, c, ns, mode)
		waitPVGone(t, c, pv.Name)
		subs := e.subvolumes(t)
		switch mode {
		case "retain":
			if !contains(subs, name) {
				t.Fatalf("retained subvolume %s gone: %v", name, subs)
			}
			if got, err := os.ReadFile(filepath.Join(mnt, e.subvolumePath(t, name), "kept")); err != nil || string(got) != mode {
				t.Fatalf("retained data: %q %v", got, err)
			}
		case "archive":
			if contains(subs, name) {
				t.Fatalf("archived volume %s still there: %v", name, subs)
			}
			var archive string
			for _, s := range subs {
				if strings.HasPrefix(s, "archived-"+name+"-") {
					archive = s
				}
			}
			if archive == "" {
				t.Fatalf("no archive of %s in %v", name, subs)
			}
			if got, err := os.ReadFile(filepath.Join(mnt, e.subvolumePath(t, archive), "kept")); err != nil || string(got) != mode {
				t.Fatalf("archived data: %q %v", got, err)
			}
			if key, _ := e.identity(t, name); key != "" {
				t.Fatal("the archived volume's identity is still there")
			}
		}
		nfsRefused(t, p, pv)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCephFSLongName: a claim whose volume name is as long as names get
// (255 bytes) has a subvolume whose name is shortened to what the mgr can
// keep, an identity ganesha mounts it as, and goes away with its claim.
func TestCephFSLongName(t *testing.T) {
	e := newCephTestEnv(t)
	c, ns, p := e.c, e.ns, e.p
	class := cephClass(t, e, ns+"-ceph", nil)
	name := strings.Repeat("l", 200)
	createClaim(t, c, framework.Claim(ns, name, class, "8Mi"))
	pv := waitBound(t, c, ns, name)
	if n := len(pv.Annotations[volume.AnnDirectory]); n != 255 {
		t.Fatalf("volume name of %d bytes", n)
	}
	subs := e.subvolumes(t)
	if len(subs) != 1 || len(subs[0]) >= 255 {
		t.Fatalf("subvolumes %v", subs)
	}
	target := p.target(pv, 3)
	target.UID, target.GID = 999, 999
	nfsWriteAs(t, target, "f", []byte("long"))
	if got, err := nfsclient.ReadFile(t.Context(), target, "f"); err != nil || string(got) != "long" {
		t.Fatalf("read back %q %v", got, err)
	}
	deleteClaim(t, c, ns, name)
	waitPVGone(t, c, pv.Name)
	if left := e.subvolumes(t); len(left) != 0 {
		t.Fatalf("left %v", left)
	}
	if key, _ := e.identity(t, subs[0]); key != "" {
		t.Fatal("identity left")
	}
}

// TestCephFSUnavailable: without -ceph-conf a CephFS claim gets an event
// that says what is missing, and nothing is made.
func TestCephFSUnavailable(t *testing.T) {
	env := newTestEnv(t)
	class := env.ns + "-ceph"
	storageClass(t, env.c, class, env.p.cfg.Name, map[string]string{"fsType": "cephfs"}, v1.PersistentVolumeReclaimDelete)
	createClaim(t, env.c, framework.Claim(env.ns, "c", class, "1Mi"))
	warningEvent(t, env.c, env.ns, "c", "-ceph-conf")
	if left := env.p.volumeDirs(); len(left) != 0 {
		t.Fatalf("left in the store: %v", left)
	}
}

// TestCephFSClusterRestart: every Ceph daemon stops and starts again; the
// volumes come back over NFS with their data, and new claims work. On a
// cluster of its own, as restarting the shared one would disturb the others.
func TestCephFSClusterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Ceph cluster")
	}
	e := newCephTestEnvOn(t, cephbed.Start(t, cephbed.Options{}))
	c, ns, p := e.c, e.ns, e.p
	class := cephClass(t, e, ns+"-ceph", nil)
	e.cephClaim(t, framework.Claim(ns, "before", class, "8Mi"))
	pv := waitBound(t, c, ns, "before")
	target := p.target(pv, 3)
	target.UID, target.GID = 999, 999
	nfsWriteAs(t, target, "kept", []byte("through a restart of the cluster"))

	start := time.Now()
	if err := e.bed.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted := time.Since(start)
	framework.Eventually(t, 3*time.Minute, "the volume served again after the cluster restart", func() (bool, error) {
		got, err := nfsclient.ReadFile(t.Context(), target, "kept")
		return err == nil && string(got) == "through a restart of the cluster", nil
	})
	t.Logf("FIGURE CephFS cluster restart: daemons back in %s, the volume readable over NFS %s after the restart began",
		restarted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// Not from a cache: what ganesha writes now reaches the restarted
	// cluster, and what another client writes there reaches NFS clients.
	framework.Eventually(t, 2*time.Minute, "a write after the cluster restart", func() (bool, error) {
		return nfsclient.WriteFile(t.Context(), target, "after", []byte("written after the restart")) == nil, nil
	})
	mnt := e.bed.MountFuse(t, "/", cephbed.Client{})
	dir := filepath.Join(mnt, e.subvolumePath(t, pv.Annotations[volume.AnnDirectory]))
	if got, err := os.ReadFile(filepath.Join(dir, "after")); err != nil || string(got) != "written after the restart" {
		t.Fatalf("the NFS write after the restart, in CephFS: %q %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "from-cephfs"), []byte("written by another CephFS client"), 0o644); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, time.Minute, "another client's file read over NFS", func() (bool, error) {
		got, err := nfsclient.ReadFile(t.Context(), target, "from-cephfs")
		return err == nil && string(got) == "written by another CephFS client", nil
	})
	e.cephClaim(t, framework.Claim(ns, "after", class, "8Mi"))
	pv2 := waitBound(t, c, ns, "after")
	t2 := p.target(pv2, 3)
	t2.UID, t2.GID = 999, 999
	nfsWriteAs(t, t2, "new", []byte("y"))
}

// TestCephFSClusterDownAtStart: the provisioner restarts while the Ceph
// cluster is down. NFS service of its local volumes does not wait for Ceph,
// and its CephFS volumes are served again once the cluster is back.
//
// On a cluster of its own: an MDS restarted within minutes of a ganesha
// that stopped with CephFS exports (as the other tests' do) waits for that
// ganesha's sessions to be reclaimed, which only its successor does
// (docs/volume-kinds.md, "One host name per ganesha").
func TestCephFSClusterDownAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Ceph cluster")
	}
	e := newCephTestEnvOn(t, cephbed.Start(t, cephbed.Options{}))
	c, ns, p := e.c, e.ns, e.p
	class := cephClass(t, e, ns+"-ceph", nil)
	local := ns + "-dir"
	storageClass(t, c, local, p.cfg.Name, map[string]string{"uid": "999", "gid": "999", "mode": "0770"}, v1.PersistentVolumeReclaimDelete)
	e.cephClaim(t, framework.Claim(ns, "remote", class, "8Mi"))
	createClaim(t, c, framework.Claim(ns, "local", local, "8Mi"))
	remotePV, localPV := waitBound(t, c, ns, "remote"), waitBound(t, c, ns, "local")
	remote, loc := p.target(remotePV, 3), p.target(localPV, 3)
	remote.UID, remote.GID, loc.UID, loc.GID = 999, 999, 999, 999
	nfsWriteAs(t, remote, "f", []byte("remote"))
	nfsWriteAs(t, loc, "f", []byte("local"))

	p.stop()
	if err := e.bed.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = e.bed.Restart(context.Background())
		}
	})
	start := time.Now()
	p.start()
	t.Logf("FIGURE provisioner start with the Ceph cluster down: ready in %s", time.Since(start).Round(time.Millisecond))
	if got, err := nfsclient.ReadFile(t.Context(), loc, "f"); err != nil || string(got) != "local" {
		t.Fatalf("local volume while Ceph is down: %q %v", got, err)
	}

	start = time.Now()
	if err := e.bed.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	var last error
	framework.Eventually(t, 3*time.Minute, "the CephFS volume served again once the cluster is back", func() (bool, error) {
		got, err := nfsclient.ReadFile(t.Context(), remote, "f")
		if err == nil && string(got) != "remote" {
			err = fmt.Errorf("read %q", got)
		}
		if err != nil && (last == nil || err.Error() != last.Error()) {
			t.Logf("not yet: %v", err)
		}
		last = err
		return err == nil, nil
	})
	t.Logf("FIGURE CephFS volume served again %s after the cluster restart began", time.Since(start).Round(time.Millisecond))
}

// TestCephFSExportAddedAgainStaysServed: a second AddExport of a served
// CephFS export (two callers racing to serve it again, as ServeRemote and
// a reconciliation pass did after a cluster restart) must leave the live
// export alone. Ganesha refuses the duplicate only after FSAL_CEPH mounted
// it again, and that mount's reclaim reset evicted the live export's
// CephFS session: every read then failed with NFS3ERR_SERVERFAULT
// (ESHUTDOWN) until ganesha restarted.
func TestCephFSExportAddedAgainStaysServed(t *testing.T) {
	e := newCephTestEnv(t)
	ns, p := e.ns, e.p
	class := cephClass(t, e, ns+"-ceph", nil)
	e.cephClaim(t, framework.Claim(ns, "v", class, "8Mi"))
	pv := waitBound(t, e.c, ns, "v")
	target := p.target(pv, 3)
	nfsWriteAs(t, target, "f", []byte("still here"))

	exports, err := framework.ProvisionerExports(t.Context(), p.cfg.ExportDir)
	if err != nil {
		t.Fatal(err)
	}
	var served *ganesha.Export
	for i, x := range exports {
		if x.Pseudo == target.Pseudo {
			served = &exports[i]
		}
	}
	if served == nil || served.Local() {
		t.Fatalf("no CephFS export %s among %v", target.Pseudo, exports)
	}
	m, err := framework.ConnectProvisionerExports(p.cfg.ExportDir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range 2 {
		if err := m.Add(t.Context(), *served); err != nil {
			t.Fatalf("Add #%d of the served export: %v", i+1, err)
		}
	}
	got, err := nfsclient.ReadFile(t.Context(), target, "f")
	if err != nil || string(got) != "still here" {
		t.Fatalf("read after the export was added again: %q %v", got, err)
	}
	nfsWriteAs(t, target, "g", []byte("and writable"))
}
