// Package e2e holds end-to-end tests that run against a real control plane
// (test/framework): one cluster for the package, one namespace per test.
// The CephFS tests share one Ceph test bed (test/framework/cephbed), started
// by the first test that needs it.
package e2e

import (
	"os"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
)

func TestMain(m *testing.M) {
	os.Exit(cephbed.Main(cephbed.RunFunc(func() int { return framework.Main(m) })))
}
