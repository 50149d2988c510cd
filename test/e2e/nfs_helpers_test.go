package e2e

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// target is how a real NFS client reaches pv on provisioner p. The PV's own
// server and path are used, as a kubelet would use them.
func (p *testProvisioner) target(pv *v1.PersistentVolume, version int) nfsclient.Target {
	return nfsclient.Target{Host: pv.Spec.NFS.Server, NFSPort: p.NFSPort, MountPort: p.MountPort, Pseudo: pv.Spec.NFS.Path, Version: version}
}

func nfsWrite(t testing.TB, p *testProvisioner, pv *v1.PersistentVolume, name string, data []byte, version int) {
	t.Helper()
	if err := nfsclient.WriteFile(t.Context(), p.target(pv, version), name, data); err != nil {
		t.Fatalf("NFSv%d write %s to %s: %v", version, name, pv.Name, err)
	}
}

func nfsRead(t testing.TB, p *testProvisioner, pv *v1.PersistentVolume, name string, version int) []byte {
	t.Helper()
	data, err := nfsclient.ReadFile(t.Context(), p.target(pv, version), name)
	if err != nil {
		t.Fatalf("NFSv%d read %s from %s: %v", version, name, pv.Name, err)
	}
	return data
}

// nfsRefused checks that clients can no longer reach pv's export, over
// NFSv3 and NFSv4.
func nfsRefused(t testing.TB, p *testProvisioner, pv *v1.PersistentVolume) {
	t.Helper()
	for _, version := range []int{3, 4} {
		if _, err := nfsclient.List(t.Context(), p.target(pv, version), "/"); err == nil {
			t.Errorf("NFSv%d client can still list %s after the PV was deleted", version, pv.Spec.NFS.Path)
		}
	}
}
