package e2e

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// TestExternalGanesha: with -run-server=false the provisioner starts no NFS
// server and manages exports of one that runs elsewhere, over that server's
// D-Bus (DBUS_SYSTEM_BUS_ADDRESS).
func TestExternalGanesha(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	exportDir := t.TempDir()
	g := startSharedGanesha(t, exportDir)
	srv, ports := g.srv, []int{g.nfsPort, g.mountPort}
	pid := srv.GaneshaPID()

	p := startProvisioner(t, c, provisionerConfig{
		Namespace: ns, ExportDir: exportDir,
		ExtraArgs: []string{"-run-server=false"},
		Env:       map[string]string{"DBUS_SYSTEM_BUS_ADDRESS": srv.BusAddress()},
	})
	// The harness gave the provisioner ports of its own; clients must use
	// the external server's.
	p.NFSPort, p.MountPort = ports[0], ports[1]
	class := ns + "-external"
	storageClass(t, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	createClaim(t, c, framework.Claim(ns, "ext", class, "1Mi"))
	pv := waitBound(t, c, ns, "ext")
	nfsWrite(t, p, pv, "through-external-ganesha", []byte("hello"), 3)
	if got := nfsRead(t, p, pv, "through-external-ganesha", 4); string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	if srv.GaneshaPID() != pid || srv.Restarts() != 0 {
		t.Fatalf("the external ganesha was restarted (pid %d -> %d)", pid, srv.GaneshaPID())
	}
	if n := len(p.exports(t.Context())); n != 1 {
		t.Fatalf("external ganesha serves %d exports, want 1", n)
	}
}
