// Package failover tests active/passive failover of the provisioner over
// CephFS (-failover): two replicas as separate process trees, each bound to
// an address of its own, behind a stand-in for the Service that forwards to
// the ready one; a real control plane (test/framework) and a real Ceph
// (test/framework/cephbed).
package failover

import (
	"os"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
)

func TestMain(m *testing.M) {
	os.Exit(cephbed.Main(cephbed.RunFunc(func() int { return framework.Main(m) })))
}
