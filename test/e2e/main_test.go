// Package e2e holds end-to-end tests that run against a real control plane
// (test/framework): one cluster for the package, one namespace per test.
package e2e

import (
	"os"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }
