package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// previousRelease is the commit of the release before issue 13: the
// provisioner whose PVs the new one must keep serving.
const previousRelease = "ecfad3d32a76d5578b92d0f31e6465cbb7d6c334"

var previousBuild = sync.OnceValues(func() (string, error) {
	commit := previousRelease
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	// A build cached by an earlier run needs no history (CI's clone may be
	// shallow).
	bin := filepath.Join(cache, "nfs-provisioner", "previous-release", commit, "nfs-provisioner")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("find the repository: %w", err)
	}
	repo := strings.TrimSpace(string(root))
	if err := exec.Command("git", "-C", repo, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		return "", fmt.Errorf("the previous release %s is not in this clone (a shallow clone?): fetch its history, e.g. git fetch --unshallow", commit)
	}
	src, err := os.MkdirTemp("", "nfs-provisioner-"+previousRelease+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repo, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git archive %s: %v\n%s", commit, err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-o", bin+".tmp", "./cmd/provisioner")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", commit, err, out)
	}
	return bin, os.Rename(bin+".tmp", bin)
})

// TestUpgradeFromPreviousRelease: volumes of every onDelete mode made by the
// previous release are served by the new binary on the same store with
// their data, survive its periodic reconciliation, and are deleted as each
// PV's onDelete says.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	old, err := previousBuild()
	if err != nil {
		t.Fatal(err)
	}
	c := framework.Shared(t)
	ns := c.Namespace(t)
	p := startProvisioner(t, c, provisionerConfig{Namespace: ns, Binary: old})
	env := testEnv{c: c, ns: ns, p: p}
	type vol struct {
		mode    volume.OnDelete
		pv      *v1.PersistentVolume
		content string
	}
	var vols []vol
	for _, mode := range []volume.OnDelete{volume.OnDeleteDelete, volume.OnDeleteRetain, volume.OnDeleteArchive} {
		class := ns + "-" + string(mode)
		storageClass(t, c, class, p.cfg.Name, map[string]string{"onDelete": string(mode)}, v1.PersistentVolumeReclaimDelete)
		pv, content := boundWithData(t, env, class, "old-"+string(mode))
		vols = append(vols, vol{mode, pv, content})
	}
	// One more made by the old release that stays live through the test.
	env.class = ns + "-" + string(volume.OnDeleteDelete)
	stays, staysContent := boundWithData(t, env, env.class, "old-stays")

	p.stop()
	p.cfg.Binary = ""
	p.cfg.ExtraArgs = fastReconcile
	p.restart()
	time.Sleep(settle)
	for _, v := range vols {
		served(t, p, v.pv, "data", v.content)
	}
	served(t, p, stays, "data", staysContent)
	createClaim(t, c, framework.Claim(ns, "new", env.class, "1Mi"))
	fresh := waitBound(t, c, ns, "new")
	for _, v := range append(vols, vol{pv: stays}) {
		if fresh.Annotations[volume.AnnExportID] == v.pv.Annotations[volume.AnnExportID] {
			t.Errorf("new PV %s got export ID %s of old PV %s", fresh.Name, v.pv.Annotations[volume.AnnExportID], v.pv.Name)
		}
	}
	nfsWrite(t, p, fresh, "x", []byte("x"), 3)

	for _, v := range vols {
		dir := v.pv.Annotations[volume.AnnDirectory]
		deleteClaim(t, c, ns, "old-"+string(v.mode))
		waitPVGone(t, c, v.pv.Name)
		nfsRefused(t, p, v.pv)
		time.Sleep(settle)
		kept := storeHas(t, p, dir)
		archived := ""
		for _, d := range p.volumeDirs() {
			if d != dir && strings.Contains(d, dir) {
				if data, err := os.ReadFile(filepath.Join(p.cfg.ExportDir, d, "data")); err == nil && string(data) == v.content {
					archived = d
				}
			}
		}
		switch v.mode {
		case volume.OnDeleteDelete:
			if kept || archived != "" {
				t.Errorf("onDelete=delete of an old PV kept its data (dir %v, archive %q)", kept, archived)
			}
		case volume.OnDeleteRetain:
			mustKeep(t, p, dir, "data", v.content)
		case volume.OnDeleteArchive:
			if kept || archived == "" {
				t.Errorf("onDelete=archive of an old PV: directory kept %v, archive %q", kept, archived)
			}
		}
	}
	served(t, p, stays, "data", staysContent)
}
