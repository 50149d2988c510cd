package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// Issue 13: a PV's volume is bound to the PV's own name; a PV naming a
// volume that another PV names is refused and touches nothing.

// TestHandMadePVNamingAnotherVolumeIsRefused: PVs made by hand, copied or
// restored by a backup tool that name a live volume's directory get a
// Warning event; when they are released and deleted the live volume keeps
// its data and its export; a restart still becomes ready.
func TestHandMadePVNamingAnotherVolumeIsRefused(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	victim, content := boundWithData(t, env, env.class, "victim")
	dir, id := victim.Annotations[volume.AnnDirectory], victim.Annotations[volume.AnnExportID]

	for _, tc := range []struct{ name, pvName, exportID string }{
		// A copy of the PV under another name: same directory, same ID.
		{"copy", "copy-of-" + victim.Name, id},
		// A restore with a fresh ID.
		{"restored", "restored-" + victim.Name, "4242"},
		// A name the directory also ends with: <ns>-<claim>-<pv> ends with
		// "-victim-<pv>", so a PV named "victim-<pv>" passes a bare suffix
		// check; only "another PV names it" can refuse it.
		{"suffix", "victim-" + victim.Name, "4343"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forged := handMadePV(t, c, victim, tc.pvName, dir, tc.exportID)
			t.Logf("event: %s", pvWarning(t, c, forged.Name, ""))
			// Released and so handed to the provisioner's Delete, with
			// onDelete=delete copied from the victim.
			releaseToGhost(t, c, forged.Name, ns)
			time.Sleep(settle)
			mustKeep(t, p, dir, "data", content)
			served(t, p, victim, "data", content)
			deletePV(t, c, forged.Name)
			time.Sleep(settle)
			mustKeep(t, p, dir, "data", content)
			served(t, p, victim, "data", content)
			if got, _, _, ok := exportOf(t, p, victim); !ok || fmt.Sprint(got) != id {
				t.Fatalf("the victim's export is %d (exported %v), want ID %s", got, ok, id)
			}
		})
	}
	p.stop()
	p.restart()
	served(t, p, victim, "data", content)
}

// TestTwoPVsNamingOneVolumeDoNotWedgeStartup: with a hand-made PV naming a
// live volume present at start-up, the provisioner still becomes ready,
// both real volumes keep serving, the copy gets a Warning event, and new
// claims are provisioned.
func TestTwoPVsNamingOneVolumeDoNotWedgeStartup(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	a, contentA := boundWithData(t, env, env.class, "a")
	b, contentB := boundWithData(t, env, env.class, "b")
	p.stop()
	forged := handMadePV(t, c, a, "second-name-for-"+a.Name, a.Annotations[volume.AnnDirectory], "5000")
	p.restart() // fails the test if /readyz never answers
	served(t, p, a, "data", contentA)
	served(t, p, b, "data", contentB)
	t.Logf("event: %s", pvWarning(t, c, forged.Name, ""))
	createClaim(t, c, framework.Claim(ns, "after", env.class, "1Mi"))
	after := waitBound(t, c, ns, "after")
	nfsWrite(t, p, after, "x", []byte("x"), 3)
	time.Sleep(settle)
	served(t, p, a, "data", contentA)
}

// TestPVRenamedOntoAnotherVolumeIsRefused: a live PV whose directory
// annotation is edited to name another live volume is refused (event);
// deleting it never deletes the other volume's data.
func TestPVRenamedOntoAnotherVolumeIsRefused(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	a, contentA := boundWithData(t, env, env.class, "a")
	b, _ := boundWithData(t, env, env.class, "b")
	patchPVAnnotation(t, c, b.Name, volume.AnnDirectory, a.Annotations[volume.AnnDirectory])
	t.Logf("event: %s", pvWarning(t, c, b.Name, ""))
	deleteClaim(t, c, ns, "b")
	time.Sleep(settle)
	mustKeep(t, p, a.Annotations[volume.AnnDirectory], "data", contentA)
	served(t, p, a, "data", contentA)
	p.stop()
	p.restart()
	served(t, p, a, "data", contentA)
}

// Issue 13: the store identity is never regenerated while the store holds
// volumes, and start-up never removes exports or data because of it.

// TestMissingIdentityNeverDestroys: with the identity file gone, start-up
// either recovers the same identity (from the PVs) or refuses with a
// message that says how to restore it. Either way every volume, live or
// left over, keeps its data, and once the identity is back every live
// volume is served and deletes still honour onDelete.
func TestMissingIdentityNeverDestroys(t *testing.T) {
	for _, tc := range []struct {
		name     string
		livePVs  bool // whether any PV still names the store
		mayStart bool // whether start-up may recover the identity
	}{
		{"with-live-PVs", true, true},
		// Nothing to recover from: start-up must refuse.
		{"only-leftovers", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, fastReconcile...)
			c, ns, p := env.c, env.ns, env.p
			retain := ns + "-retain"
			storageClass(t, c, retain, p.cfg.Name, map[string]string{"onDelete": "retain"}, v1.PersistentVolumeReclaimDelete)
			kept, keptContent := boundWithData(t, env, retain, "kept")
			deleteClaim(t, c, ns, "kept")
			waitPVGone(t, c, kept.Name)
			var live *v1.PersistentVolume
			var liveContent string
			if tc.livePVs {
				live, liveContent = boundWithData(t, env, env.class, "live")
			}
			idFile := filepath.Join(p.cfg.ExportDir, volume.StateDirName, "identity")
			identity, err := os.ReadFile(idFile)
			if err != nil {
				t.Fatal(err)
			}

			p.stop()
			if err := os.Remove(idFile); err != nil {
				t.Fatal(err)
			}
			startErr := p.tryStart()
			if startErr == nil {
				// /readyz means ganesha serves; the identity is resolved
				// after that, and a refusal ends the process then.
				framework.Eventually(t, 30*time.Second, "the identity recovered or start-up refused", func() (bool, error) {
					select {
					case <-p.proc.Exited():
						startErr = fmt.Errorf("exited after /readyz (%v):\n%s", p.proc.ExitErr(), p.log())
						return true, nil
					default:
					}
					_, err := os.Stat(idFile)
					return err == nil, nil
				})
			}
			switch {
			case startErr != nil:
				t.Logf("start-up refused: %v", lineWith(startErr.Error(), "identity"))
				if !strings.Contains(startErr.Error(), "identity") {
					t.Errorf("start-up failed without saying the identity is missing or how to restore it:\n%v", startErr)
				}
			case !tc.mayStart:
				t.Errorf("the provisioner started with no identity and no PV to recover it from")
				fallthrough
			default:
				got, err := os.ReadFile(idFile)
				if err != nil || strings.TrimSpace(string(got)) != strings.TrimSpace(string(identity)) {
					t.Errorf("identity after start-up is %q (%v), want the old %q", got, err, identity)
				}
				time.Sleep(settle)
			}
			mustKeep(t, p, kept.Annotations[volume.AnnDirectory], "data", keptContent)
			if live != nil {
				mustKeep(t, p, live.Annotations[volume.AnnDirectory], "data", liveContent)
			}

			if startErr != nil {
				if err := os.WriteFile(idFile, identity, 0o600); err != nil {
					t.Fatal(err)
				}
				p.start()
			}
			if _, err := os.Stat(idFile); err != nil {
				t.Fatalf("identity file: %v", err)
			}
			time.Sleep(settle)
			mustKeep(t, p, kept.Annotations[volume.AnnDirectory], "data", keptContent)
			if live == nil {
				return
			}
			served(t, p, live, "data", liveContent)
			deleteClaim(t, c, ns, "live")
			waitPVGone(t, c, live.Name)
			if storeHas(t, p, live.Annotations[volume.AnnDirectory]) {
				t.Errorf("onDelete=delete of %s after recovery left its directory", live.Name)
			}
		})
	}
}

// lineWith is the first line of s that mentions word, or s's first line.
func lineWith(s, word string) string {
	lines := strings.Split(s, "\n")
	for _, l := range lines {
		if strings.Contains(l, word) {
			return strings.TrimSpace(l)
		}
	}
	return lines[0]
}
